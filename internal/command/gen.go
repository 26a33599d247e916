// Package command is the encoding of concord's state-machine commands: the
// Request a proposal carries through raft to internal/fsm and the Response
// Apply returns. Shapes mirror etcd's KV API (etcdserverpb, mvccpb). The
// generated code is committed; building never needs protoc.
//
// Encode and decode only through this package's functions, so that the
// format has one owner.
package command

//go:generate protoc --go_out=. --go_opt=paths=source_relative command.proto
