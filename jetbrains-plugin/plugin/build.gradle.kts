// The Lane plugin for IntelliJ-based IDEs, on LSP4IJ. Built with the IntelliJ Platform Gradle
// Plugin 2.x: `./gradlew buildPlugin` (build/distributions/*.zip), `./gradlew runIde` (a sandbox
// IDE with LSP4IJ installed). Needs JetBrains' repositories (not reachable where the tests run;
// see README.md). The lane part is ../core, compiled into this plugin from its sources; LSP4J and
// Gson come from LSP4IJ and the platform at run time, so none is bundled.

plugins {
    id("java")
    id("org.jetbrains.kotlin.jvm") version "2.2.21"
    id("org.jetbrains.intellij.platform") version "2.10.5"
}

group = "dev.lane"
version = "0.1.0"

val platformVersion: String by project
val lsp4ijVersion: String by project
val pluginSinceBuild: String by project

repositories {
    mavenCentral()
    intellijPlatform {
        defaultRepositories()
    }
}

dependencies {
    intellijPlatform {
        // IntelliJ IDEA Community: the plugin needs only com.intellij.modules.platform, so the same
        // zip installs in Ultimate, GoLand, PyCharm and the other IDEs of that build range.
        intellijIdeaCommunity(platformVersion)
        // LSP4IJ from the JetBrains Marketplace (plugin 23257); it brings LSP4J onto the classpath.
        plugin("com.redhat.devtools.lsp4ij", lsp4ijVersion)
    }
}

kotlin {
    jvmToolchain(21)
    // The core's sources (protocol, client, models, texts): one copy of the lane logic, tested by Maven.
    sourceSets["main"].kotlin.srcDir("../core/src/main/kotlin")
}

intellijPlatform {
    pluginConfiguration {
        ideaVersion {
            sinceBuild = pluginSinceBuild
        }
    }
    pluginVerification {
        ides {
            recommended()
        }
    }
}
