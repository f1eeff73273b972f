//! The real kube-apiserver test fixture starts, answers with the users it promises, and stops.

use lane_tests::apiserver::ApiServer;

#[test]
fn the_fixture_starts_a_real_api_server_with_its_users() {
    let server = ApiServer::start();
    let dir = server.dir.clone();
    for user in ["admin", "alice", "bob"] {
        let kubeconfig = server.kubeconfig(user);
        let text = std::fs::read_to_string(&kubeconfig)
            .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
        assert!(text.contains(&server.server), "{text}");
        assert!(!server.token(user).is_empty());
    }
    // A real server: /version over TLS with the admin token.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&server.ca_file)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", server.token("admin")))
        .arg(format!("{}/version", server.server))
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\"gitVersion\": \"v1.34."), "{body}");
    drop(server);
    assert!(!dir.exists(), "stopping removes {}", dir.display());
}
