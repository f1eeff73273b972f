// Command consul-conformance checks lane's Consul test double (tests/src/consul.rs, built as
// target/debug/lane-test-consul) against HashiCorp's own Go client, github.com/hashicorp/consul/api:
// every answer the double gives must be one the real client accepts and reads the way it reads a
// real Consul's. It starts the double itself (so it can flip its switches), then registers,
// reads with blocking queries, writes with check-and-set (one write wins, one loses), and checks
// ACL refusals, 404s, an index reset and an unreachable agent.
//
// Usage: consul-conformance -double target/debug/lane-test-consul
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

const rootToken = "root-token"
const readToken = "read-token"

type double struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addr  string
}

func startDouble(bin string) (*double, error) {
	cmd := exec.Command(bin, "--token", rootToken, "--read-token", readToken)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("the double said nothing: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on http://")
	if !ok {
		return nil, fmt.Errorf("unexpected first line from the double: %q", line)
	}
	return &double{cmd: cmd, stdin: stdin, out: out, addr: addr}, nil
}

func (d *double) switchTo(cmd string) error {
	if _, err := fmt.Fprintln(d.stdin, cmd); err != nil {
		return err
	}
	line, err := d.out.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "ok" {
		return fmt.Errorf("switch %q: %s", cmd, strings.TrimSpace(line))
	}
	return nil
}

// agent starts the agent of another node of the double's datacenter and answers its address.
func (d *double) agent(node string) (string, error) {
	if _, err := fmt.Fprintln(d.stdin, "agent", node); err != nil {
		return "", err
	}
	line, err := d.out.ReadString('\n')
	if err != nil {
		return "", err
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ok http://")
	if !ok {
		return "", fmt.Errorf("agent %s: %s", node, strings.TrimSpace(line))
	}
	return addr, nil
}

func (d *double) stop() {
	_ = d.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
}

type checker struct{ failures int }

func (c *checker) ok(cond bool, what string, args ...any) {
	msg := fmt.Sprintf(what, args...)
	if cond {
		fmt.Printf("ok   %s\n", msg)
	} else {
		fmt.Printf("FAIL %s\n", msg)
		c.failures++
	}
}

func (c *checker) must(err error, what string) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", what, err)
		c.failures++
	}
}

func client(addr, token string) *api.Client {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	cfg.Token = token
	cl, err := api.NewClient(cfg)
	if err != nil {
		panic(err)
	}
	return cl
}

func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func main() {
	bin := flag.String("double", "target/debug/lane-test-consul", "the lane-test-consul binary")
	flag.Parse()
	d, err := startDouble(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consul-conformance:", err)
		os.Exit(1)
	}
	defer d.stop()
	c := &checker{}
	run(c, d)
	if c.failures > 0 {
		fmt.Printf("%d check(s) failed\n", c.failures)
		d.stop()
		os.Exit(1)
	}
	fmt.Println("the double answers as the Go client expects")
}

func run(c *checker, d *double) {
	root := client(d.addr, rootToken)
	health := root.Health()

	// A TCP listener for the double's health check to probe.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()

	// Register, then wait with blocking queries until the check passes.
	reg := &api.AgentServiceRegistration{
		ID:      "gaia-lane.shop.cart-feature-x",
		Name:    "gaia-lane.shop.cart",
		Tags:    []string{"lane=feature-x", "owner=alice@example.com"},
		Port:    ln.Addr().(*net.TCPAddr).Port,
		Address: "127.0.0.1",
		Meta:    map[string]string{"lane": "feature-x"},
		Check: &api.AgentServiceCheck{
			TCP:      ln.Addr().String(),
			Interval: "200ms",
			Timeout:  "1s",
		},
	}
	c.must(root.Agent().ServiceRegister(reg), "register gaia-lane.shop.cart")
	entries, meta, err := health.Service("gaia-lane.shop.cart", "", false, nil)
	c.must(err, "health of gaia-lane.shop.cart")
	c.ok(len(entries) == 1 && entries[0].Service.ID == reg.ID, "the instance is listed (%d entries)", len(entries))
	c.ok(meta.LastIndex > 0 && meta.KnownLeader, "X-Consul-Index %d > 0 and a known leader", meta.LastIndex)
	passing := false
	idx := meta.LastIndex
	deadline := time.Now().Add(5 * time.Second)
	for !passing && time.Now().Before(deadline) {
		es, m, err := health.Service("gaia-lane.shop.cart", "lane=feature-x", true,
			&api.QueryOptions{WaitIndex: idx, WaitTime: 2 * time.Second})
		if err != nil {
			c.must(err, "blocking health query")
			return
		}
		idx = m.LastIndex
		passing = len(es) == 1 && es[0].Checks.AggregatedStatus() == api.HealthPassing
	}
	c.ok(passing, "a blocking query with ?passing&tag=lane=feature-x sees the instance once its TCP check passes")
	es, _, err := health.Service("gaia-lane.shop.cart", "lane=other", true, nil)
	c.must(err, "health with another tag")
	c.ok(len(es) == 0, "a tag nobody has matches nothing (%d entries)", len(es))
	es, _, err = health.Service("gaia-lane.shop.cart", "", false,
		&api.QueryOptions{Filter: `Service.Meta.lane == "feature-x" and "owner=alice@example.com" in Service.Tags`})
	c.must(err, "health with a filter")
	c.ok(len(es) == 1, "a filter on meta and tags matches the instance (%d entries)", len(es))

	// A blocking query returns early when a new instance registers.
	_, m, err := health.Service("gaia.shop.cart", "", false, nil)
	c.must(err, "health of gaia.shop.cart")
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = root.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "gaia.shop.cart-1", Name: "gaia.shop.cart", Port: 8080, Address: "127.0.0.1",
			Check: &api.AgentServiceCheck{TCP: ln.Addr().String(), Interval: "1s", Status: api.HealthPassing},
		})
	}()
	start := time.Now()
	es, m2, err := health.Service("gaia.shop.cart", "", true, &api.QueryOptions{WaitIndex: m.LastIndex, WaitTime: 10 * time.Second})
	took := time.Since(start)
	c.must(err, "blocking health query for a registration")
	c.ok(len(es) == 1 && m2.LastIndex > m.LastIndex && took < 5*time.Second,
		"a blocking query wakes on a registration (after %v, index %d -> %d)", took.Round(time.Millisecond), m.LastIndex, m2.LastIndex)

	// A blocking query with nothing changing waits out its wait time.
	start = time.Now()
	_, m3, err := health.Service("gaia.shop.cart", "", true, &api.QueryOptions{WaitIndex: m2.LastIndex, WaitTime: 400 * time.Millisecond})
	took = time.Since(start)
	c.must(err, "an idle blocking query")
	c.ok(took >= 400*time.Millisecond && took < 3*time.Second && m3.LastIndex == m2.LastIndex,
		"an idle blocking query returns after its wait (%v) with the same index", took.Round(time.Millisecond))

	// Every check by state, blocking: wakes when a check changes.
	checks, sm, err := health.State(api.HealthAny, nil)
	c.must(err, "health state any")
	c.ok(len(checks) >= 3 && sm.LastIndex > 0, "health/state/any lists the node's and the services' checks (%d)", len(checks))
	crit, _, err := health.State(api.HealthCritical, nil)
	c.must(err, "health state critical")
	c.ok(len(crit) == 0, "no check is critical (%d)", len(crit))

	services, _, err := root.Catalog().Services(nil)
	c.must(err, "catalog services")
	_, hasLane := services["gaia-lane.shop.cart"]
	_, hasBase := services["gaia.shop.cart"]
	c.ok(hasLane && hasBase && len(services["gaia-lane.shop.cart"]) == 2, "the catalog lists both services with their tags: %v", services)

	// KV with check-and-set: one write wins, one loses.
	kv := root.KV()
	key := "gaia-lane/lanes/feature-x"
	won, _, err := kv.CAS(&api.KVPair{Key: key, Value: []byte(`{"id":"feature-x"}`), ModifyIndex: 0}, nil)
	c.must(err, "CAS create")
	c.ok(won, "a CAS create (cas=0) of a new key wins")
	won, _, err = kv.CAS(&api.KVPair{Key: key, Value: []byte(`{"id":"other"}`), ModifyIndex: 0}, nil)
	c.must(err, "second CAS create")
	c.ok(!won, "a second CAS create of the same key loses")
	pair, km, err := kv.Get(key, nil)
	c.must(err, "KV get")
	c.ok(pair != nil && string(pair.Value) == `{"id":"feature-x"}` && km.LastIndex == pair.ModifyIndex,
		"the value reads back (base64 decoded by the client) with X-Consul-Index = ModifyIndex")
	if pair == nil {
		return
	}
	stale := pair.ModifyIndex
	won, _, err = kv.CAS(&api.KVPair{Key: key, Value: []byte(`{"id":"feature-x","v":2}`), ModifyIndex: stale}, nil)
	c.must(err, "CAS update")
	c.ok(won, "a CAS update at the current ModifyIndex wins")
	won, _, err = kv.CAS(&api.KVPair{Key: key, Value: []byte(`{"id":"feature-x","v":3}`), ModifyIndex: stale}, nil)
	c.must(err, "stale CAS update")
	c.ok(!won, "a CAS update at a stale ModifyIndex loses")
	pair, _, err = kv.Get(key, nil)
	c.must(err, "KV get after CAS")
	c.ok(pair != nil && string(pair.Value) == `{"id":"feature-x","v":2}`, "the winner's value is stored")

	// A blocking KV read wakes on a write to its prefix.
	pairs, lm, err := kv.List("gaia-lane/lanes/", nil)
	c.must(err, "KV list")
	c.ok(len(pairs) == 1, "the prefix lists one lane")
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = kv.Put(&api.KVPair{Key: "gaia-lane/lanes/feature-y", Value: []byte("{}")}, nil)
	}()
	pairs, lm2, err := kv.List("gaia-lane/lanes/", &api.QueryOptions{WaitIndex: lm.LastIndex, WaitTime: 10 * time.Second})
	c.must(err, "blocking KV list")
	c.ok(len(pairs) == 2 && lm2.LastIndex > lm.LastIndex, "a blocking list wakes on a new key (%d keys)", len(pairs))

	if pair != nil {
		ok, _, err := kv.DeleteCAS(&api.KVPair{Key: key, ModifyIndex: stale}, nil)
		c.must(err, "stale CAS delete")
		c.ok(!ok, "a CAS delete at a stale ModifyIndex loses")
		ok, _, err = kv.DeleteCAS(&api.KVPair{Key: key, ModifyIndex: pair.ModifyIndex}, nil)
		c.must(err, "CAS delete")
		c.ok(ok, "a CAS delete at the current ModifyIndex wins")
	}
	gone, _, err := kv.Get(key, nil)
	c.must(err, "KV get of a deleted key")
	c.ok(gone == nil, "a deleted key reads as missing (404, no error)")

	// ACLs.
	_, _, err = client(d.addr, "no-such-token").KV().Get(key, nil)
	c.ok(statusCode(err) == 403 && strings.Contains(err.Error(), "ACL not found"), "an unknown token is 403 ACL not found: %v", err)
	_, err = client(d.addr, readToken).KV().Put(&api.KVPair{Key: key, Value: []byte("x")}, nil)
	c.ok(statusCode(err) == 403 && strings.Contains(err.Error(), "Permission denied"), "a read token cannot write: %v", err)
	_, _, err = client(d.addr, readToken).KV().List("gaia-lane/", nil)
	c.must(err, "a read token lists")

	// 404s.
	err = root.Agent().ServiceDeregister("no-such-id")
	c.ok(statusCode(err) == 404, "deregistering an unknown id is a 404: %v", err)
	c.must(root.Agent().ServiceDeregister("gaia.shop.cart-1"), "deregister gaia.shop.cart-1")
	es, _, err = health.Service("gaia.shop.cart", "", false, nil)
	c.must(err, "health after deregister")
	c.ok(len(es) == 0, "a deregistered instance is gone")

	// Nodes: the agent of a second node registers on that node; each agent lists and deregisters
	// only its own services; a dead node's serfHealth makes its instances critical; the catalog
	// deregisters an instance of a dead node.
	bAddr, err := d.agent("machine-b")
	c.must(err, "start the agent of node machine-b")
	b := client(bAddr, rootToken)
	self, err := b.Agent().Self()
	c.must(err, "agent self")
	c.ok(self["Config"]["NodeName"] == "machine-b", "the second agent is node machine-b: %v", self["Config"])
	laptop := "gaia-lane.shop.cart-laptop"
	c.must(b.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: laptop, Name: "gaia-lane.shop.cart", Tags: []string{"lane=laptop"}, Address: "127.0.0.1", Port: 1,
		Check: &api.AgentServiceCheck{TTL: "10m", Status: "passing", DeregisterCriticalServiceAfter: "30m"},
	}), "register through the second agent")
	own, err := b.Agent().Services()
	c.must(err, "agent services of machine-b")
	c.ok(len(own) == 1 && own[laptop] != nil && own[laptop].Service == "gaia-lane.shop.cart", "the second agent lists its one service: %v", own)
	others, err := root.Agent().Services()
	c.must(err, "agent services of the first node")
	c.ok(others[laptop] == nil, "the first agent does not list the second node's service")
	err = root.Agent().ServiceDeregister(laptop)
	c.ok(statusCode(err) == 404, "an agent cannot deregister another node's service: %v", err)
	es, _, err = health.Service("gaia-lane.shop.cart", "lane=laptop", true, nil)
	c.must(err, "health of the second node's instance")
	c.ok(len(es) == 1 && es[0].Node.Node == "machine-b", "it is passing on node machine-b")
	c.must(d.switchTo("node machine-b critical"), "the second node fails")
	es, _, err = health.Service("gaia-lane.shop.cart", "lane=laptop", true, nil)
	c.must(err, "passing health of a dead node's instance")
	c.ok(len(es) == 0, "a dead node's instance is not passing")
	es, _, err = health.Service("gaia-lane.shop.cart", "lane=laptop", false, nil)
	c.must(err, "health of a dead node's instance")
	c.ok(len(es) == 1 && es[0].Checks.AggregatedStatus() == api.HealthCritical, "a dead node's instance is critical")
	_, err = root.Catalog().Deregister(&api.CatalogDeregistration{Node: "machine-b", ServiceID: laptop}, nil)
	c.must(err, "catalog deregister")
	es, _, err = health.Service("gaia-lane.shop.cart", "lane=laptop", false, nil)
	c.must(err, "health after the catalog deregister")
	c.ok(len(es) == 0, "the catalog deregister removed it")

	// An index reset: a client ahead of the server waits out its wait, then sees a lower index.
	// Some writes first, so the index before the reset is well above what the restamp gives.
	for i := 0; i < 10; i++ {
		_, err := kv.Put(&api.KVPair{Key: "scratch", Value: []byte(fmt.Sprint(i))}, nil)
		c.must(err, "scratch write")
	}
	c.must(root.Agent().ServiceRegister(reg), "re-register gaia-lane.shop.cart")
	_, before, err := health.Service("gaia-lane.shop.cart", "", false, nil)
	c.must(err, "health before the reset")
	c.must(d.switchTo("reset-index"), "reset the index")
	start = time.Now()
	_, after, err := health.Service("gaia-lane.shop.cart", "", false, &api.QueryOptions{WaitIndex: before.LastIndex, WaitTime: 300 * time.Millisecond})
	c.must(err, "health after the reset")
	c.ok(after.LastIndex < before.LastIndex && time.Since(start) >= 300*time.Millisecond,
		"after a reset the index goes backwards (%d -> %d) once the wait is out", before.LastIndex, after.LastIndex)

	// Unreachable, then back.
	c.must(d.switchTo("down"), "switch down")
	_, _, err = kv.List("gaia-lane/", nil)
	c.ok(err != nil && strings.Contains(err.Error(), "connection refused"), "a down agent refuses connections: %v", err)
	c.must(d.switchTo("up"), "switch up")
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		_, _, err = kv.List("gaia-lane/", nil)
		ok = err == nil
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.ok(ok, "the agent answers again once up: %v", err)
}
