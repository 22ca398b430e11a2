// Command etcd is etcd's own server entry point: the etcd/server module ships
// the server as a library (etcdmain), and its main package lives in a module
// that replaces its dependencies with local folders, so it cannot be built
// from the module proxy directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
