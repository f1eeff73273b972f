rootProject.name = "lane-jetbrains"

plugins {
    // Lets Gradle provision the JDK that jvmToolchain(21) asks for.
    id("org.gradle.toolchains.foojay-resolver-convention") version "1.0.0"
}
