// The Lanes tool window: lanes → services → instances, built by the core's buildTree from the pushed
// status, with health, expiry and traffic in grey after each label (a failed deploy on its service),
// and under each lane that owns data its Data node (withDataNodes, from `lane.data.ls`);
// actions in the context menu, a double-click runs a node's own action, a toolbar (Deploy, Create
// Lane, Refresh); the empty tree welcomes with the first step; server not found says the fixes.

package dev.lane.jetbrains

import com.intellij.openapi.actionSystem.ActionManager
import com.intellij.openapi.actionSystem.ActionPlaces
import com.intellij.openapi.actionSystem.AnAction
import com.intellij.openapi.actionSystem.DefaultActionGroup
import com.intellij.openapi.project.DumbAware
import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.SimpleToolWindowPanel
import com.intellij.openapi.wm.ToolWindow
import com.intellij.openapi.wm.ToolWindowFactory
import com.intellij.ui.ColoredTreeCellRenderer
import com.intellij.ui.PopupHandler
import com.intellij.ui.ScrollPaneFactory
import com.intellij.ui.SimpleTextAttributes
import com.intellij.ui.content.ContentFactory
import com.intellij.ui.treeStructure.Tree
import com.intellij.util.ui.tree.TreeUtil
import com.intellij.ui.DoubleClickListener
import dev.lane.core.LaneActions
import dev.lane.core.TreeNode
import dev.lane.core.WELCOME
import dev.lane.core.buildTree
import dev.lane.core.escapeHtml
import dev.lane.core.nodeActions
import dev.lane.core.serverNodes
import dev.lane.core.withDataNodes
import java.awt.event.MouseEvent
import javax.swing.JTree
import javax.swing.tree.DefaultMutableTreeNode
import javax.swing.tree.DefaultTreeModel
import javax.swing.tree.TreePath

const val TOOL_WINDOW_ID = "Lanes"

class LanesToolWindowFactory : ToolWindowFactory, DumbAware {
    override fun createToolWindowContent(project: Project, toolWindow: ToolWindow) {
        val panel = LanesPanel(project)
        val content = ContentFactory.getInstance().createContent(panel, "", false)
        content.setDisposer(panel)
        toolWindow.contentManager.addContent(content)
    }
}

private class LanesPanel(private val project: Project) : SimpleToolWindowPanel(true, true), com.intellij.openapi.Disposable {
    private val root = DefaultMutableTreeNode()
    private val model = DefaultTreeModel(root)
    private val tree = Tree(model)

    init {
        tree.isRootVisible = false
        tree.showsRootHandles = true
        tree.cellRenderer = Renderer()
        val toolbarGroup = DefaultActionGroup().apply {
            listOf(LaneActions.DEPLOY, LaneActions.CREATE, LaneActions.REFRESH).forEach { id ->
                ActionManager.getInstance().getAction(id)?.let(::add)
            }
        }
        val toolbar = ActionManager.getInstance().createActionToolbar("LanesToolbar", toolbarGroup, true)
        toolbar.targetComponent = tree
        setToolbar(toolbar.component)
        setContent(ScrollPaneFactory.createScrollPane(tree))
        PopupHandler.installPopupMenu(tree, ContextGroup(), ActionPlaces.TOOLWINDOW_POPUP)
        // A double-click runs the node's action (a failed deploy: its logs; server not found: the fix).
        object : DoubleClickListener() {
            override fun onDoubleClick(event: MouseEvent): Boolean {
                val node = tree.selectionPath?.let(::nodeOf) ?: return false
                val action = node.action?.let { laneActionFor(it, node) } ?: return false
                action.runFor(project)
                return true
            }
        }.installOn(tree)
        // The empty tree (nothing runs yet): the first step, a click away (VS Code's view welcome).
        tree.emptyText.clear()
        for ((i, line) in WELCOME.withIndex()) {
            val action = line.action
            when {
                action != null -> tree.emptyText.appendLine(line.text, SimpleTextAttributes.LINK_PLAIN_ATTRIBUTES) {
                    laneActionFor(action, null)?.runFor(project)
                }
                i == 0 -> tree.emptyText.appendText(line.text)
                else -> tree.emptyText.appendLine(line.text)
            }
        }
        LaneProjectService.getInstance(project).onChange(this) { render() }
        render()
    }

    /** Rebuilds the tree, keeping what was expanded (node ids are stable) and the selection. */
    private fun render() {
        val expanded = mutableSetOf<String>()
        TreeUtil.collectExpandedPaths(tree).forEach { path -> nodeOf(path)?.let { expanded.add(it.id) } }
        val firstShow = root.childCount == 0
        val selected = tree.selectionPath?.let(::nodeOf)?.id
        root.removeAllChildren()
        fun add(parent: DefaultMutableTreeNode, nodes: List<TreeNode>) {
            for (n in nodes) {
                val child = DefaultMutableTreeNode(n)
                parent.add(child)
                add(child, n.children)
            }
        }
        val service = LaneProjectService.getInstance(project)
        add(root, serverNodes(service.serverState, service.missingTried) ?: withDataNodes(buildTree(service.status), service.dataRows))
        model.reload()
        TreeUtil.treeNodeTraverser(root).forEach { t ->
            val node = (t as? DefaultMutableTreeNode)?.userObject as? TreeNode ?: return@forEach
            val path = TreePath(t.path)
            if (node.id in expanded || (firstShow && node.expandedByDefault)) tree.expandPath(path)
            if (node.id == selected) tree.selectionPath = path
        }
    }

    private fun nodeOf(path: TreePath): TreeNode? = (path.lastPathComponent as? DefaultMutableTreeNode)?.userObject as? TreeNode

    /** The context menu of the selected node: the core's nodeActions, bound to that node. */
    private inner class ContextGroup : DefaultActionGroup(), DumbAware {
        override fun getChildren(e: com.intellij.openapi.actionSystem.AnActionEvent?): Array<AnAction> {
            val node = tree.selectionPath?.let(::nodeOf) ?: return AnAction.EMPTY_ARRAY
            return nodeActions(node).mapNotNull<String, AnAction> { id ->
                val action: AnAction = laneActionFor(id, node) ?: return@mapNotNull null
                action.templatePresentation.text = LaneActions.spec(id).title
                action.templatePresentation.description = LaneActions.spec(id).description
                action
            }.toTypedArray()
        }
    }

    override fun dispose() {}
}

private class Renderer : ColoredTreeCellRenderer() {
    override fun customizeCellRenderer(
        tree: JTree,
        value: Any?,
        selected: Boolean,
        expanded: Boolean,
        leaf: Boolean,
        row: Int,
        hasFocus: Boolean,
    ) {
        val node = (value as? DefaultMutableTreeNode)?.userObject as? TreeNode ?: return
        icon = iconOf(node.icon)
        val attrs = when {
            node.dimmed -> SimpleTextAttributes.GRAYED_ATTRIBUTES
            node.active -> SimpleTextAttributes.REGULAR_BOLD_ATTRIBUTES
            else -> SimpleTextAttributes.REGULAR_ATTRIBUTES
        }
        append(node.label, attrs)
        val descAttrs = if (node.failed) SimpleTextAttributes.ERROR_ATTRIBUTES else SimpleTextAttributes.GRAYED_ATTRIBUTES
        node.description?.let { append("  $it", descAttrs) }
        toolTipText = node.tooltip?.let { "<html>" + escapeHtml(it).replace("\n", "<br>") + "</html>" }
    }
}

