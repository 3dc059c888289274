//go:build tools

// The commands this module builds; the import keeps them (and their dependencies) in go.sum.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
