// Starts `lane lsp` when a project with a `lane.toml` opens (at its root, or below it in a monorepo),
// so the status bar and the Lanes tree have a status without opening a file first.

package dev.lane.jetbrains

import com.intellij.openapi.application.smartReadAction
import com.intellij.openapi.project.Project
import com.intellij.openapi.project.guessProjectDir
import com.intellij.openapi.startup.ProjectActivity
import com.intellij.psi.search.FilenameIndex
import com.intellij.psi.search.GlobalSearchScope

const val MANIFEST = "lane.toml"

/** Whether the project has a service: a `lane.toml` at its root or anywhere in its content. */
suspend fun hasLaneManifest(project: Project): Boolean {
    if (project.guessProjectDir()?.findChild(MANIFEST) != null) return true
    return smartReadAction(project) {
        FilenameIndex.getVirtualFilesByName(MANIFEST, GlobalSearchScope.projectScope(project)).isNotEmpty()
    }
}

class LaneStartup : ProjectActivity {
    override suspend fun execute(project: Project) {
        if (hasLaneManifest(project)) LaneProjectService.getInstance(project).start()
    }
}
