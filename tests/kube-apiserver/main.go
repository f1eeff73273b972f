// Command kube-apiserver runs a real Kubernetes API server (k8s.io/kubernetes,
// see go.mod for the exact release) together with an embedded etcd, both in
// this one process, for lane's tests.
//
// It listens on loopback only, keeps all state in a fresh temporary directory,
// and removes that directory when it stops. Once /readyz answers "ok" it writes
// kubeconfig files and a shell env file into --out and prints exactly one line,
// "READY <out dir>", on stdout. Everything else (klog, etcd errors) goes to
// stderr.
//
// It stops (gracefully: apiserver, then etcd, then the temp dir) on SIGTERM or
// SIGINT, when the process given by --parent-pid goes away, or, with
// --exit-on-stdin-eof, when its stdin reaches EOF, so that a test runner that
// is killed never leaves it behind.
//
// Users (static tokens, see --token-auth-file; tokens are random per run):
//
//	admin  groups system:masters                 (full access, bypasses RBAC)
//	alice  groups lane-developers                (no rights until bound)
//	bob    groups lane-developers, lane-admins   (no rights until bound)
//
// All authenticated users are also in system:authenticated, which the default
// RBAC policy lets do discovery, self-subject reviews and similar, nothing
// more. No RoleBindings for lane-developers or lane-admins are created: tests
// bind exactly what they want to exercise.
//
// Files written to --out:
//
//	kubeconfig        three contexts admin, alice, bob (current: admin)
//	admin.kubeconfig  one context each, for tools that only take a file
//	alice.kubeconfig
//	bob.kubeconfig
//	ca.crt            the CA that signed the serving certificate
//	env               KUBE_SERVER, KUBE_CA_FILE, KUBE_TOKEN_{ADMIN,ALICE,BOB},
//	                  KUBE_APISERVER_PID (shell syntax, for curl-based tests)
//
// Extra kube-apiserver flags may follow a "--"; they are applied after this
// program's defaults, so they override them (e.g. "-- --v=2"). With
// --etcd-servers among them no embedded etcd is started.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	basecompatibility "k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

type user struct {
	name   string
	groups []string
	token  string
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		outDir        string
		parentPID     int
		stdinEOF      bool
		readyTimeout  time.Duration
		shutdownLimit time.Duration
	)
	fs := flag.NewFlagSet("kube-apiserver", flag.ContinueOnError)
	fs.StringVar(&outDir, "out", "", "directory to write kubeconfig, ca.crt and env into (required; created if missing)")
	fs.IntVar(&parentPID, "parent-pid", 0, "stop when the process with this pid exits (0: do not watch)")
	fs.BoolVar(&stdinEOF, "exit-on-stdin-eof", false, "stop when stdin reaches EOF (spawn with a pipe as stdin)")
	fs.DurationVar(&readyTimeout, "ready-timeout", 3*time.Minute, "give up if /readyz is not ok after this long")
	fs.DurationVar(&shutdownLimit, "shutdown-timeout", 30*time.Second, "force exit if a clean shutdown takes longer")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s --out DIR [--parent-pid PID] [--exit-on-stdin-eof] [-- kube-apiserver flags...]\n", os.Args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if outDir == "" {
		fs.Usage()
		return 2
	}
	extraFlags := fs.Args()

	// The stop context: signals, parent death, stdin EOF. A second signal
	// skips the graceful apiserver shutdown (etcd is still closed and the temp
	// dir still removed).
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	hurry := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("received %v", sig))
		<-sigs
		close(hurry)
	}()
	if parentPID > 0 {
		go watchParent(parentPID, func() { cancel(fmt.Errorf("parent process %d exited", parentPID)) })
	}
	if stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("stdin reached EOF"))
		}()
	}

	removeStaleDirs()
	tmp, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return fail("create temp dir: %v", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return fail("%v", err)
	}
	klog.Infof("lane kube-apiserver: data in %s", tmp)

	err = serve(ctx, cancel, hurry, tmp, outDir, extraFlags, readyTimeout, shutdownLimit)
	klog.Flush()
	if err != nil {
		// Printed after etcd and the apiserver have stopped, so that it is the
		// last line of the log, not buried in their shutdown messages.
		return fail("%v", err)
	}
	return 0
}

func serve(ctx context.Context, cancel context.CancelCauseFunc, hurry <-chan struct{}, tmp, outDir string, extraFlags []string, readyTimeout, shutdownLimit time.Duration) error {
	start := time.Now()
	pki := filepath.Join(tmp, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	caPEM, err := writePKI(pki)
	if err != nil {
		return fmt.Errorf("generate certificates: %v", err)
	}

	users := []user{
		{name: "admin", groups: []string{"system:masters"}},
		{name: "alice", groups: []string{"lane-developers"}},
		{name: "bob", groups: []string{"lane-developers", "lane-admins"}},
	}
	var tokens strings.Builder
	for i := range users {
		users[i].token = randomHex(24)
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", users[i].token, users[i].name, "uid-"+users[i].name, strings.Join(users[i].groups, ","))
	}
	tokenFile := filepath.Join(tmp, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		return err
	}

	// The secure listener is bound here, not by the apiserver, so the port is
	// known up front and nobody can take it in between.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	serverURL := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	s := options.NewServerRunOptions()
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	pfs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		pfs.AddFlagSet(f)
	}
	args := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(tmp, "certs"),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--service-account-issuer=" + serverURL,
		"--service-account-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		// ValidatingAdmissionPolicy is on by default since 1.30; named here so
		// that the intent is explicit. ServiceAccount admission is off because
		// no controller creates the "default" ServiceAccount in namespaces,
		// which would make every Pod create fail.
		"--enable-admission-plugins=ValidatingAdmissionPolicy",
		"--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No nodes and no real network: do not publish 127.0.0.1 as the
		// endpoints of the "kubernetes" Service (validation rejects loopback).
		"--endpoint-reconciler-type=none",
	}
	args = append(args, extraFlags...)
	if err := pfs.Parse(args); err != nil {
		return fmt.Errorf("kube-apiserver flags: %v", err)
	}
	s.SecureServing.Listener = ln
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("feature gates / emulation version: %v", err)
	}
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return fmt.Errorf("logging options: %v", err)
	}

	// An embedded etcd unless --etcd-servers was given.
	if len(s.Etcd.StorageConfig.Transport.ServerList) == 0 {
		etcd, etcdURL, err := startEtcd(filepath.Join(tmp, "etcd"))
		if err != nil {
			return fmt.Errorf("start etcd: %v", err)
		}
		defer etcd.Close()
		s.Etcd.StorageConfig.Transport.ServerList = []string{etcdURL}
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("complete kube-apiserver options: %v", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("invalid kube-apiserver options: %v", utilerrors.NewAggregate(errs))
	}

	serverDone := make(chan error, 1)
	go func() { serverDone <- app.Run(ctx, completed) }()

	admin := users[0]
	if err := waitReady(ctx, serverURL, caPEM, admin.token, readyTimeout, serverDone); err != nil {
		cancel(err)
		waitShutdown(serverDone, shutdownLimit, hurry)
		return fmt.Errorf("kube-apiserver did not become ready: %v", err)
	}
	if err := writeOutputs(outDir, serverURL, caPEM, users); err != nil {
		cancel(err)
		waitShutdown(serverDone, shutdownLimit, hurry)
		return fmt.Errorf("write outputs: %v", err)
	}
	klog.Infof("lane kube-apiserver ready at %s after %v", serverURL, time.Since(start).Round(time.Millisecond))
	fmt.Printf("READY %s\n", outDir)

	select {
	case err := <-serverDone:
		// The server stopped although nobody asked it to.
		if ctx.Err() == nil {
			return fmt.Errorf("kube-apiserver stopped unexpectedly: %v", err)
		}
		if err != nil {
			klog.Errorf("kube-apiserver stopped: %v", err)
		}
	case <-ctx.Done():
		klog.Infof("stopping: %v", context.Cause(ctx))
		waitShutdown(serverDone, shutdownLimit, hurry)
	}
	return nil
}

const (
	tempPrefix = "lane-kube-apiserver-"
	ownerFile  = "owner.pid"
)

// removeStaleDirs removes the temp dirs of earlier runs that could not clean
// up after themselves (killed with SIGKILL): those whose owner is gone.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			klog.Infof("removing %s, left behind by process %d", dir, pid)
			_ = os.RemoveAll(dir)
		}
	}
}

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "lane kube-apiserver: "+format+"\n", a...)
	return 1
}

// waitShutdown waits for app.Run to return, at most limit or until a second
// signal; after that the caller goes on to close etcd and remove the temp dir
// regardless.
func waitShutdown(done <-chan error, limit time.Duration, hurry <-chan struct{}) {
	select {
	case <-hurry:
		klog.Errorf("second signal: not waiting for the kube-apiserver to finish shutting down")
	case err := <-done:
		if err != nil {
			klog.Errorf("kube-apiserver shutdown: %v", err)
		}
	case <-time.After(limit):
		klog.Errorf("kube-apiserver did not shut down within %v; exiting anyway", limit)
	}
}

// watchParent calls gone once the given process no longer exists. If it is
// our actual parent, a change of our parent pid (re-parenting to init or a
// subreaper) is the signal, which is immune to pid reuse.
func watchParent(pid int, gone func()) {
	isParent := os.Getppid() == pid
	for {
		if isParent {
			if os.Getppid() != pid {
				break
			}
		} else if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	gone()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// startEtcd starts a single-member etcd on free loopback ports. Ports are
// picked by binding :0 and releasing, so another process may grab one in
// between; that is retried a few times.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, "", err
		}
		clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
		peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}

		cfg := embed.NewConfig()
		cfg.Name = "lane-test"
		cfg.Dir = dir
		// Test data only, never kept: skip fsync (as upstream's etcd test server does).
		cfg.UnsafeNoFsync = true
		cfg.ListenClientUrls = []url.URL{clientURL}
		cfg.AdvertiseClientUrls = []url.URL{clientURL}
		cfg.ListenPeerUrls = []url.URL{peerURL}
		cfg.AdvertisePeerUrls = []url.URL{peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{"stderr"}

		if err := os.RemoveAll(dir); err != nil {
			return nil, "", err
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			if isAddrInUse(err) {
				continue
			}
			return nil, "", err
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, clientURL.String(), nil
		case err := <-e.Err():
			e.Close()
			return nil, "", fmt.Errorf("etcd failed while starting: %w", err)
		case <-time.After(60 * time.Second):
			e.Close()
			return nil, "", errors.New("etcd was not ready after 60s")
		}
	}
	return nil, "", fmt.Errorf("no free ports after 5 attempts: %w", lastErr)
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writePKI creates a CA, a serving certificate for 127.0.0.1/localhost signed
// by it, and a service-account key pair, and returns the CA certificate (PEM).
func writePKI(dir string) ([]byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "lane-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP("10.96.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":        caPEM,
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
	}
	for name, key := range map[string]*ecdsa.PrivateKey{"apiserver.key": srvKey, "sa.key": saKey} {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		files[name] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// waitReady polls /readyz (authenticated as admin, so it sees every check)
// until it answers 200.
func waitReady(ctx context.Context, serverURL string, caPEM []byte, token string, timeout time.Duration, serverDone <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.After(timeout)
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case err := <-serverDone:
			return fmt.Errorf("server exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("stopped before ready: %v", context.Cause(ctx))
		case <-deadline:
			return fmt.Errorf("not ready after %v; last /readyz answer: %s", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeOutputs(outDir, serverURL string, caPEM []byte, users []user) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	caFile := filepath.Join(abs, "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return err
	}

	newConfig := func() *clientcmdapi.Config {
		cfg := clientcmdapi.NewConfig()
		cluster := clientcmdapi.NewCluster()
		cluster.Server = serverURL
		cluster.CertificateAuthorityData = caPEM
		cfg.Clusters["lane-test"] = cluster
		return cfg
	}
	addUser := func(cfg *clientcmdapi.Config, u user) {
		auth := clientcmdapi.NewAuthInfo()
		auth.Token = u.token
		cfg.AuthInfos[u.name] = auth
		kctx := clientcmdapi.NewContext()
		kctx.Cluster = "lane-test"
		kctx.AuthInfo = u.name
		kctx.Namespace = "default"
		cfg.Contexts[u.name] = kctx
	}

	all := newConfig()
	for _, u := range users {
		addUser(all, u)
		one := newConfig()
		addUser(one, u)
		one.CurrentContext = u.name
		if err := clientcmd.WriteToFile(*one, filepath.Join(abs, u.name+".kubeconfig")); err != nil {
			return err
		}
	}
	all.CurrentContext = users[0].name
	if err := clientcmd.WriteToFile(*all, filepath.Join(abs, "kubeconfig")); err != nil {
		return err
	}

	var env strings.Builder
	fmt.Fprintf(&env, "KUBE_SERVER=%s\nKUBE_CA_FILE=%s\n", serverURL, caFile)
	for _, u := range users {
		fmt.Fprintf(&env, "KUBE_TOKEN_%s=%s\n", strings.ToUpper(u.name), u.token)
	}
	fmt.Fprintf(&env, "KUBE_APISERVER_PID=%d\n", os.Getpid())
	// Written last and renamed into place: its presence means the rest is there.
	tmpEnv := filepath.Join(abs, ".env.tmp")
	if err := os.WriteFile(tmpEnv, []byte(env.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmpEnv, filepath.Join(abs, "env"))
}
