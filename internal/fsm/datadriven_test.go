package fsm_test

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/dgraph-io/badger/v4"

	"github.com/concordkv/concord/internal/command"
	"github.com/concordkv/concord/internal/fsm"
	"github.com/concordkv/concord/internal/schema"
)

// TestScripts runs the scripts in testdata against a one-peer node: each
// file starts from an empty store. Commands (arguments are key=value or
// flags; ranges take k= with end=, prefix or from-key):
//
//	put k= v= [lease=] [prev] [ignore-value] [ignore-lease]
//	del k= [range] [prev]
//	get k= [range] [rev=] [limit=] [sort=(target,order)] [keys-only]
//	    [count-only] [min-mod= max-mod= min-create= max-create=] [raft]
//	txn          body: "if target(key) op value", "then <op>", "else <op>",
//	             where <op> is put/del/get as above or txn, whose own body
//	             follows indented by two more spaces
//	claim k= [range] marker= [v=] [lease=]
//	add k= delta= [lease=]
//	compact rev=
//	history from= [range] [prev]
//	grant id= ttl=               (ttl a Go duration)
//	revoke id=
//	expire id= term=
//	checkpoint term= [id=remaining ...]  e.g. 7=300ms
//	leases       the lease table, with each lease's keys
//	term         the node's raft term
//	raw          the badger keys under s/, decoded
//
// Rewrite the expected output with: go test ./internal/fsm -run TestScripts -rewrite
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		nd := startNode(t, false)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := argMap(d.CmdArgs)
			switch d.Cmd {
			case "put", "del", "compact", "claim", "add":
				return formatResponse(nd.propose(opRequest(t, d.Cmd, args)))
			case "get":
				req := rangeRequest(t, args)
				if _, ok := args["raft"]; ok {
					return formatResponse(nd.propose(&command.Request{Request: &command.Request_Range{Range: req}}))
				}
				return formatResponse(nd.read(req))
			case "txn":
				lines := strings.Split(d.Input, "\n")
				txn, rest := parseTxn(t, lines, 0)
				if len(rest) != 0 {
					t.Fatalf("%s: cannot parse %q", d.Pos, rest[0])
				}
				return formatResponse(nd.propose(&command.Request{Request: &command.Request_Txn{Txn: txn}}))
			case "history":
				return history(t, nd, args)
			case "grant", "revoke", "expire", "checkpoint":
				return formatResponse(nd.propose(leaseRequest(t, d.Cmd, d.CmdArgs)))
			case "leases":
				return leases(t, nd.n.DB())
			case "term":
				return fmt.Sprintf("%d\n", nd.n.Status().Term)
			case "raw":
				return raw(t, nd.n.DB())
			}
			t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			return ""
		})
	})
}

func argMap(cas []datadriven.CmdArg) map[string]string {
	m := map[string]string{}
	for _, a := range cas {
		m[a.Key] = strings.Join(a.Vals, ",")
	}
	return m
}

func flag(args map[string]string, name string) bool {
	_, ok := args[name]
	return ok
}

func num(t *testing.T, args map[string]string, name string) int64 {
	s, ok := args[name]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// keyRange reads k= and end=, prefix or from-key.
func keyRange(args map[string]string) (key, end []byte) {
	k := args["k"]
	switch {
	case flag(args, "prefix"):
		return []byte(k), []byte(prefixEnd(k))
	case flag(args, "from-key"):
		return []byte(k), []byte{0}
	}
	return []byte(k), bs(args["end"])
}

func rangeRequest(t *testing.T, args map[string]string) *command.RangeRequest {
	key, end := keyRange(args)
	req := &command.RangeRequest{
		Key: key, RangeEnd: end, Revision: num(t, args, "rev"), Limit: num(t, args, "limit"),
		KeysOnly: flag(args, "keys-only"), CountOnly: flag(args, "count-only"),
		MinModRevision: num(t, args, "min-mod"), MaxModRevision: num(t, args, "max-mod"),
		MinCreateRevision: num(t, args, "min-create"), MaxCreateRevision: num(t, args, "max-create"),
	}
	if s, ok := args["sort"]; ok {
		target, order, _ := strings.Cut(s, ",")
		req.SortTarget = command.RangeRequest_SortTarget(command.RangeRequest_SortTarget_value[strings.ToUpper(target)])
		req.SortOrder = command.RangeRequest_SortOrder(command.RangeRequest_SortOrder_value[strings.ToUpper(order)])
	}
	return req
}

// opRequest builds a put, del, get or compact.
func opRequest(t *testing.T, cmd string, args map[string]string) *command.Request {
	switch cmd {
	case "put":
		return &command.Request{Request: &command.Request_Put{Put: &command.PutRequest{
			Key: []byte(args["k"]), Value: []byte(args["v"]), Lease: num(t, args, "lease"),
			PrevKv: flag(args, "prev"), IgnoreValue: flag(args, "ignore-value"), IgnoreLease: flag(args, "ignore-lease"),
		}}}
	case "del":
		key, end := keyRange(args)
		return &command.Request{Request: &command.Request_DeleteRange{DeleteRange: &command.DeleteRangeRequest{
			Key: key, RangeEnd: end, PrevKv: flag(args, "prev"),
		}}}
	case "compact":
		return &command.Request{Request: &command.Request_Compaction{Compaction: &command.CompactionRequest{Revision: num(t, args, "rev")}}}
	case "claim":
		key, end := keyRange(args)
		return &command.Request{Request: &command.Request_Claim{Claim: &command.ClaimRequest{
			Key: key, RangeEnd: end, Marker: []byte(args["marker"]), Value: []byte(args["v"]), Lease: num(t, args, "lease"),
		}}}
	case "add":
		return &command.Request{Request: &command.Request_Add{Add: &command.AddRequest{
			Key: []byte(args["k"]), Delta: num(t, args, "delta"), Lease: num(t, args, "lease"),
		}}}
	}
	t.Fatalf("unknown op %q", cmd)
	return nil
}

func requestOp(t *testing.T, line string) *command.RequestOp {
	cmd, cas, err := datadriven.ParseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	args := argMap(cas)
	switch cmd {
	case "get":
		return &command.RequestOp{Request: &command.RequestOp_RequestRange{RequestRange: rangeRequest(t, args)}}
	case "put":
		return &command.RequestOp{Request: &command.RequestOp_RequestPut{RequestPut: opRequest(t, cmd, args).GetPut()}}
	case "del":
		dr := opRequest(t, cmd, args).GetDeleteRange()
		return &command.RequestOp{Request: &command.RequestOp_RequestDeleteRange{RequestDeleteRange: dr}}
	case "claim":
		return &command.RequestOp{Request: &command.RequestOp_RequestClaim{RequestClaim: opRequest(t, cmd, args).GetClaim()}}
	case "add":
		return &command.RequestOp{Request: &command.RequestOp_RequestAdd{RequestAdd: opRequest(t, cmd, args).GetAdd()}}
	}
	t.Fatalf("unknown txn op %q", line)
	return nil
}

var compareRe = regexp.MustCompile(`^if (\w+)\(([^)]*)\) (=|!=|<|>) ?(.*)$`)

// parseTxn parses the lines of a txn at indent; it returns the lines left.
func parseTxn(t *testing.T, lines []string, indent int) (*command.TxnRequest, []string) {
	txn := &command.TxnRequest{}
	pad := strings.Repeat(" ", indent)
	for len(lines) > 0 {
		line := lines[0]
		if strings.TrimSpace(line) == "" {
			lines = lines[1:]
			continue
		}
		if !strings.HasPrefix(line, pad) || (len(line) > indent && line[indent] == ' ') {
			return txn, lines
		}
		line, lines = line[indent:], lines[1:]
		if m := compareRe.FindStringSubmatch(line); m != nil {
			txn.Compare = append(txn.Compare, parseCompare(t, m[1], m[2], m[3], m[4]))
			continue
		}
		branch, op, ok := strings.Cut(line, " ")
		if !ok || (branch != "then" && branch != "else") {
			t.Fatalf("cannot parse %q", line)
		}
		var ro *command.RequestOp
		if op == "txn" {
			var nested *command.TxnRequest
			nested, lines = parseTxn(t, lines, indent+2)
			ro = &command.RequestOp{Request: &command.RequestOp_RequestTxn{RequestTxn: nested}}
		} else {
			ro = requestOp(t, op)
		}
		if branch == "then" {
			txn.Success = append(txn.Success, ro)
		} else {
			txn.Failure = append(txn.Failure, ro)
		}
	}
	return txn, nil
}

// parseCompare reads target(key) op value; key may be "a..c" (a range)
// or "a*" (a prefix).
func parseCompare(t *testing.T, target, key, op, val string) *command.Compare {
	c := &command.Compare{Key: []byte(key)}
	if k, end, ok := strings.Cut(key, ".."); ok {
		c.Key, c.RangeEnd = []byte(k), []byte(end)
	} else if k, ok := strings.CutSuffix(key, "*"); ok {
		c.Key, c.RangeEnd = []byte(k), []byte(prefixEnd(k))
	}
	c.Result = map[string]command.Compare_CompareResult{
		"=": command.Compare_EQUAL, "!=": command.Compare_NOT_EQUAL,
		">": command.Compare_GREATER, "<": command.Compare_LESS,
	}[op]
	n := func() int64 {
		v, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			t.Fatalf("compare value %q: %v", val, err)
		}
		return v
	}
	switch target {
	case "value":
		c.Target, c.TargetUnion = command.Compare_VALUE, &command.Compare_Value{Value: []byte(val)}
	case "version":
		c.Target, c.TargetUnion = command.Compare_VERSION, &command.Compare_Version{Version: n()}
	case "create":
		c.Target, c.TargetUnion = command.Compare_CREATE, &command.Compare_CreateRevision{CreateRevision: n()}
	case "mod":
		c.Target, c.TargetUnion = command.Compare_MOD, &command.Compare_ModRevision{ModRevision: n()}
	case "lease":
		c.Target, c.TargetUnion = command.Compare_LEASE, &command.Compare_Lease{Lease: n()}
	default:
		t.Fatalf("unknown compare target %q", target)
	}
	return c
}

func history(t *testing.T, nd *node, args map[string]string) string {
	key, end := keyRange(args)
	var b strings.Builder
	err := nd.n.DB().View(func(txn *badger.Txn) error {
		return nd.f.History(txn, num(t, args, "from"), key, end, flag(args, "prev"), func(ev *command.Event) error {
			b.WriteString(formatEvent(ev))
			b.WriteByte('\n')
			return nil
		})
	})
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	return b.String()
}

func formatEvent(ev *command.Event) string {
	s := fmt.Sprintf("%v %s", ev.Type, formatKV(ev.Kv))
	if ev.Type == command.Event_DELETE {
		s = fmt.Sprintf("DELETE %s m=%d", ev.Kv.Key, ev.Kv.ModRevision)
	}
	if ev.PrevKv != nil {
		s += " prev: " + formatKV(ev.PrevKv)
	}
	return s
}

func formatKV(kv *command.KeyValue) string {
	s := fmt.Sprintf("%s=%s c=%d m=%d v=%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	if kv.Lease != 0 {
		s += fmt.Sprintf(" lease=%d", kv.Lease)
	}
	return s
}

func formatResponse(resp *command.Response) string {
	var b strings.Builder
	head := fmt.Sprintf("rev=%d", resp.Revision)
	if resp.CompactRevision != 0 {
		head += fmt.Sprintf(" compact=%d", resp.CompactRevision)
	}
	if resp.Code != command.Code_OK {
		fmt.Fprintf(&b, "%v: %s (%s)\n", resp.Code, resp.Error, head)
		return b.String()
	}
	b.WriteString(head + "\n")
	switch r := resp.Response.(type) {
	case *command.Response_Range:
		formatRange(&b, "", r.Range)
	case *command.Response_Put:
		formatPut(&b, "", r.Put)
	case *command.Response_DeleteRange:
		formatDel(&b, "", r.DeleteRange)
	case *command.Response_Txn:
		formatTxn(&b, "", r.Txn)
	case *command.Response_LeaseGrant:
		fmt.Fprintf(&b, "granted %d ttl=%v\n", r.LeaseGrant.Id, time.Duration(r.LeaseGrant.Ttl))
	case *command.Response_LeaseRevoke:
		fmt.Fprintf(&b, "deleted=%d\n", r.LeaseRevoke.Deleted)
	case *command.Response_LeaseExpire:
		fmt.Fprintf(&b, "deleted=%d\n", r.LeaseExpire.Deleted)
	case *command.Response_Claim:
		formatClaim(&b, "", r.Claim)
	case *command.Response_Add:
		formatAdd(&b, "", r.Add)
	}
	return b.String()
}

func formatRange(b *strings.Builder, in string, r *command.RangeResponse) {
	for _, kv := range r.Kvs {
		fmt.Fprintf(b, "%s%s\n", in, formatKV(kv))
	}
	fmt.Fprintf(b, "%scount=%d more=%v\n", in, r.Count, r.More)
}

func formatPut(b *strings.Builder, in string, r *command.PutResponse) {
	if r.PrevKv != nil {
		fmt.Fprintf(b, "%sprev: %s\n", in, formatKV(r.PrevKv))
	}
}

func formatDel(b *strings.Builder, in string, r *command.DeleteRangeResponse) {
	fmt.Fprintf(b, "%sdeleted=%d\n", in, r.Deleted)
	for _, kv := range r.PrevKvs {
		fmt.Fprintf(b, "%sprev: %s\n", in, formatKV(kv))
	}
}

func formatTxn(b *strings.Builder, in string, r *command.TxnResponse) {
	fmt.Fprintf(b, "%ssucceeded=%v\n", in, r.Succeeded)
	for _, op := range r.Responses {
		switch o := op.Response.(type) {
		case *command.ResponseOp_ResponseRange:
			fmt.Fprintf(b, "%sget:\n", in)
			formatRange(b, in+"  ", o.ResponseRange)
		case *command.ResponseOp_ResponsePut:
			fmt.Fprintf(b, "%sput\n", in)
			formatPut(b, in+"  ", o.ResponsePut)
		case *command.ResponseOp_ResponseDeleteRange:
			fmt.Fprintf(b, "%sdel:\n", in)
			formatDel(b, in+"  ", o.ResponseDeleteRange)
		case *command.ResponseOp_ResponseTxn:
			fmt.Fprintf(b, "%stxn:\n", in)
			formatTxn(b, in+"  ", o.ResponseTxn)
		case *command.ResponseOp_ResponseClaim:
			fmt.Fprintf(b, "%sclaim:\n", in)
			formatClaim(b, in+"  ", o.ResponseClaim)
		case *command.ResponseOp_ResponseAdd:
			fmt.Fprintf(b, "%sadd:\n", in)
			formatAdd(b, in+"  ", o.ResponseAdd)
		}
	}
}

// raw prints the keys under s/ with their decoded parts.
func raw(t *testing.T, db *badger.DB) string {
	var b strings.Builder
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: schema.State})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(string(k), string(schema.StateHistory)):
				rev, key, _ := schema.ParseHistoryKey(k)
				fmt.Fprintf(&b, "s/h/ %d %q -> %x\n", rev, key, v)
			case strings.HasPrefix(string(k), string(schema.StateIndex)):
				key, rev, _ := schema.ParseIndexKey(nil, k)
				fmt.Fprintf(&b, "s/i/ %q %d -> %x\n", key, rev, v)
			case strings.HasPrefix(string(k), string(schema.StateKV)):
				fmt.Fprintf(&b, "s/k/ %q -> %x\n", k[len(schema.StateKV):], v)
			case strings.HasPrefix(string(k), string(schema.StateLeased)):
				rest := k[len(schema.StateLeased):]
				fmt.Fprintf(&b, "s/lk/ %d %q -> %x\n", binary.BigEndian.Uint64(rest), rest[8:], v)
			case strings.HasPrefix(string(k), string(schema.StateLease)):
				id, _ := schema.ParseLeaseKey(k)
				fmt.Fprintf(&b, "s/l/ %d -> %x\n", id, v)
			default:
				fmt.Fprintf(&b, "%s -> %x\n", k, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// leaseRequest builds a grant, revoke, expire or checkpoint.
func leaseRequest(t *testing.T, cmd string, cas []datadriven.CmdArg) *command.Request {
	args := argMap(cas)
	switch cmd {
	case "grant":
		ttl, err := time.ParseDuration(args["ttl"])
		if err != nil && args["ttl"] != "" {
			t.Fatalf("ttl=%q: %v", args["ttl"], err)
		}
		return &command.Request{Request: &command.Request_LeaseGrant{LeaseGrant: &command.LeaseGrantRequest{Id: num(t, args, "id"), Ttl: int64(ttl)}}}
	case "revoke":
		return &command.Request{Request: &command.Request_LeaseRevoke{LeaseRevoke: &command.LeaseRevokeRequest{Id: num(t, args, "id")}}}
	case "expire":
		return &command.Request{Request: &command.Request_LeaseExpire{LeaseExpire: &command.LeaseExpireRequest{
			Id: num(t, args, "id"), Term: uint64(num(t, args, "term")),
		}}}
	}
	cp := &command.LeaseCheckpointRequest{Term: uint64(num(t, args, "term"))}
	for _, a := range cas {
		if a.Key == "term" {
			continue
		}
		id, err := strconv.ParseInt(a.Key, 10, 64)
		if err != nil {
			t.Fatalf("checkpoint %s: %v", a.Key, err)
		}
		rem, err := time.ParseDuration(strings.Join(a.Vals, ","))
		if err != nil {
			t.Fatalf("checkpoint %s: %v", a.Key, err)
		}
		cp.Checkpoints = append(cp.Checkpoints, &command.LeaseCheckpoint{Id: id, Remaining: int64(rem)})
	}
	return &command.Request{Request: &command.Request_LeaseCheckpoint{LeaseCheckpoint: cp}}
}

// leases prints the lease table.
func leases(t *testing.T, db *badger.DB) string {
	var b strings.Builder
	err := db.View(func(txn *badger.Txn) error {
		return fsm.ScanLeases(txn, func(l fsm.Lease) error {
			fmt.Fprintf(&b, "%d ttl=%v remaining=%v keys=%d bytes=%d:", l.ID, l.TTL, l.Remaining, l.Keys, l.KeyBytes)
			err := fsm.LeaseKeys(txn, l.ID, func(key []byte) error {
				fmt.Fprintf(&b, " %s", key)
				return nil
			})
			b.WriteByte('\n')
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
