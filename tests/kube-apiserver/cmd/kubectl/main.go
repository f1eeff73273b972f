// Command kubectl is kubectl itself, built from the same pinned k8s.io/kubernetes as the test API
// server, for machines whose PATH has none (scripts/kube-apiserver.sh kubectl).
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
