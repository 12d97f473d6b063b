//! The distributed mode against secured NATS servers: each test starts its own
//! `nats-server` (JetStream on, a spare port) in one configuration, with keys and
//! certificates made in the test, and runs a whole run through it: the master and the
//! workers it starts (which get the credentials through the environment). Without a
//! `nats-server` binary these tests say so and pass, unless CI sets
//! `CONDUCTOR_REQUIRE_NATS=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conductor::{Conductor, NatsAuth};

conductor::test_support!();

#[conductor::worker(type = "auth_triple")]
fn auth_triple(job: u64) -> anyhow::Result<u64> {
    Ok(job * 3)
}

/// A folder of its own for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "conductor-auth-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server` of the test's own, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spare_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts `nats-server` with JetStream and `args`; `None` (after saying so) when
/// there is no such binary and CI does not require one.
fn start_server(scratch: &Scratch, args: &[&str]) -> Option<Server> {
    let port = spare_port();
    let store = scratch.path("store");
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&store)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.path("server.log")).unwrap())
        .spawn();
    let Ok(child) = child else {
        let required = std::env::var("CONDUCTOR_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "nats-server cannot be started");
        eprintln!("SKIPPED: no nats-server binary");
        return None;
    };
    let server = Server { child, port };
    let since = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if since.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(scratch.path("server.log")).unwrap_or_default();
            panic!("nats-server did not start:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

fn unique_run(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("auth-{name}-{}-{nanos}", std::process::id())
}

/// The tests of this file take turns: some set process-wide variables
/// (`SSL_CERT_FILE`, `CONDUCTOR_NATS_CREDS`) that every master reads.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A whole run through `url` with `auth`: its result.
async fn run_through(
    url: &str,
    auth: NatsAuth,
) -> Result<conductor::Report<u64>, conductor::Error> {
    Conductor::<u64, u64>::new("auth_triple")
        .nats(url)
        .nats_auth(auth)
        .run_name(unique_run("run"))
        .worker_limit(1)
        .logging(false)
        .jobs(0..20)
        .run()
        .await
}

async fn assert_runs(url: &str, auth: NatsAuth) {
    let report = run_through(url, auth)
        .await
        .unwrap_or_else(|e| panic!("the run through {url} failed: {e}"));
    assert_eq!(report.completed(), 20, "{report:?}");
}

/// The run is refused with an error that names the server and never the secret.
async fn assert_refused(url: &str, auth: NatsAuth, secret: &str) {
    let error = run_through(url, auth)
        .await
        .expect_err("a run with wrong credentials must fail");
    let message = format!("{error} {error:?}");
    assert!(error.is_transport(), "{message}");
    assert!(!message.contains(secret), "the secret leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_in_the_url_and_as_options() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("user");
    let Some(server) = start_server(&scratch, &["--user", "alice", "--pass", "s3cret-pw"]) else {
        return;
    };
    let port = server.port;
    assert_runs(
        &format!("nats://alice:s3cret-pw@127.0.0.1:{port}"),
        NatsAuth::new(),
    )
    .await;
    assert_runs(
        &format!("nats://127.0.0.1:{port}"),
        NatsAuth::new().user_password("alice", "s3cret-pw"),
    )
    .await;
    assert_refused(
        &format!("nats://alice:wrong-pw-42@127.0.0.1:{port}"),
        NatsAuth::new(),
        "wrong-pw-42",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_and_as_an_option() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("token");
    let Some(server) = start_server(&scratch, &["--auth", "tok-123-secret"]) else {
        return;
    };
    let port = server.port;
    assert_runs(
        &format!("nats://tok-123-secret@127.0.0.1:{port}"),
        NatsAuth::new(),
    )
    .await;
    assert_runs(
        &format!("nats://127.0.0.1:{port}"),
        NatsAuth::new().token("tok-123-secret"),
    )
    .await;
    assert_refused(
        &format!("nats://127.0.0.1:{port}"),
        NatsAuth::new().token("not-the-token-99"),
        "not-the-token-99",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("nkey");
    let user = nkeys::KeyPair::new_user();
    let config = scratch.write(
        "server.conf",
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    );
    let Some(server) = start_server(&scratch, &["-c", config.to_str().unwrap()]) else {
        return;
    };
    let url = format!("nats://127.0.0.1:{}", server.port);
    let seed = user.seed().unwrap();
    assert_runs(&url, NatsAuth::new().nkey_seed(&seed)).await;
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    assert_refused(&url, NatsAuth::new().nkey_seed(&stranger), &stranger).await;
}

/// A certificate authority, a server certificate for 127.0.0.1 and a client
/// certificate, made with `openssl`; `None` without it.
struct Certificates {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn make_certificates(scratch: &Scratch) -> Option<Certificates> {
    let dir = &scratch.0;
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ok = openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=conductor test CA",
            ],
        ]
        .concat(),
    );
    scratch.write(
        "server.ext",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    scratch.write("client.ext", "extendedKeyUsage=clientAuth\n");
    for who in ["server", "client"] {
        let subject = format!("/CN={who}");
        let (keyfile, csr, pem, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        ok =
            ok && openssl(
                dir,
                &[
                    &["req"][..],
                    &key,
                    &["-keyout", &keyfile, "-out", &csr, "-subj", &subject],
                ]
                .concat(),
            ) && openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
    }
    if !ok {
        let required = std::env::var("CONDUCTOR_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "openssl could not make the test certificates");
        eprintln!("SKIPPED: openssl could not make the test certificates");
        return None;
    }
    Some(Certificates {
        ca: scratch.path("ca.pem"),
        server: (scratch.path("server.pem"), scratch.path("server.key")),
        client: (scratch.path("client.pem"), scratch.path("client.key")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_by_option_and_by_ssl_cert_file() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("tls");
    let Some(certs) = make_certificates(&scratch) else {
        return;
    };
    let (cert, key) = (
        certs.server.0.to_str().unwrap(),
        certs.server.1.to_str().unwrap(),
    );
    let Some(server) = start_server(&scratch, &["--tls", "--tlscert", cert, "--tlskey", key])
    else {
        return;
    };
    let port = server.port;
    // tls:// with the CA given in code.
    assert_runs(
        &format!("tls://127.0.0.1:{port}"),
        NatsAuth::new().ca_file(&certs.ca),
    )
    .await;
    // nats:// with TLS required and the CA from the standard variable: the workers
    // this master starts inherit it.
    std::env::set_var("SSL_CERT_FILE", &certs.ca);
    assert_runs(
        &format!("nats://127.0.0.1:{port}"),
        NatsAuth::new().require_tls(),
    )
    .await;
    std::env::remove_var("SSL_CERT_FILE");
    // Without the CA, the server is not trusted.
    let error = run_through(&format!("tls://127.0.0.1:{port}"), NatsAuth::new())
        .await
        .expect_err("an untrusted server must be refused");
    assert!(error.is_transport(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("mtls");
    let Some(certs) = make_certificates(&scratch) else {
        return;
    };
    let (cert, key) = (
        certs.server.0.to_str().unwrap(),
        certs.server.1.to_str().unwrap(),
    );
    let ca = certs.ca.to_str().unwrap();
    let Some(server) = start_server(
        &scratch,
        &[
            "--tlsverify",
            "--tlscert",
            cert,
            "--tlskey",
            key,
            "--tlscacert",
            ca,
        ],
    ) else {
        return;
    };
    let url = format!("tls://127.0.0.1:{}", server.port);
    assert_runs(
        &url,
        NatsAuth::new()
            .ca_file(&certs.ca)
            .client_cert(&certs.client.0, &certs.client.1),
    )
    .await;
    let error = run_through(&url, NatsAuth::new().ca_file(&certs.ca))
        .await
        .expect_err("a client without a certificate must be refused");
    assert!(error.is_transport(), "{error}");
}

/// Base64url without padding, as JWTs are written.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A NATS JWT for `subject`, issued and signed by `issuer`, with `nats` as its claims.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: &str) -> String {
    let header = base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(
        r#"{{"jti":"{}","iat":{now},"iss":"{}","name":"{name}","sub":"{subject}","nats":{nats}}}"#,
        unique_run("jti").replace('-', "").to_uppercase(),
        issuer.public_key()
    );
    let signed = format!("{header}.{}", base64url(claims.as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", base64url(&signature))
}

/// The decentralized setup `nsc` makes: an operator, an account with JetStream, and a
/// user whose credentials file holds its JWT and seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("creds");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    // JetStream needs the server's own system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        r#"{"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1},"default_permissions":{"pub":{},"sub":{}},"type":"account","version":2}"#,
    );
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        r#"{"type":"operator","version":2}"#,
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "test-account",
        r#"{"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1,"mem_storage":-1,"disk_storage":-1,"streams":-1,"consumer":-1},"default_permissions":{"pub":{},"sub":{}},"type":"account","version":2}"#,
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "test-user",
        r#"{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","version":2}"#,
    );
    let config = scratch.write(
        "server.conf",
        &format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n",
            acc = account.public_key(),
            sys = system.public_key(),
        ),
    );
    let creds = scratch.write(
        "user.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    );
    let Some(server) = start_server(&scratch, &["-c", config.to_str().unwrap()]) else {
        return;
    };
    let url = format!("nats://127.0.0.1:{}", server.port);
    assert_runs(&url, NatsAuth::new().credentials_file(&creds)).await;
    // The same from the environment, as an operator would give a worker.
    std::env::set_var("CONDUCTOR_NATS_CREDS", &creds);
    assert_runs(&url, NatsAuth::new()).await;
    std::env::remove_var("CONDUCTOR_NATS_CREDS");
    let error = run_through(
        &url,
        NatsAuth::new().credentials_file(scratch.path("missing.creds")),
    )
    .await
    .expect_err("a missing credentials file must be refused");
    assert!(error.to_string().contains("credentials file"), "{error}");
}

/// The permissions recipe of docs/distributed.md for run `run`: a NATS user for the
/// master and one for its workers, each allowed only what it needs.
fn least_privilege(run: &str) -> String {
    let jobs = format!("CONDUCTOR_{run}_JOBS");
    let results = format!("CONDUCTOR_{run}_RESULTS");
    let lookups = format!("CONDUCTOR_{run}_LOOKUPS");
    format!(
        r#"authorization {{
  users = [
    {{
      user: master, password: master-pass
      permissions: {{
        publish: {{ allow: [
          "conductor.{run}.jobs", "conductor.{run}.worker.>", "conductor.{run}.all", "conductor.{run}.owner",
          "$JS.API.STREAM.CREATE.{jobs}", "$JS.API.STREAM.CREATE.{results}",
          "$JS.API.STREAM.INFO.{jobs}", "$JS.API.STREAM.INFO.{results}",
          "$JS.API.STREAM.DELETE.{jobs}", "$JS.API.STREAM.DELETE.{results}",
          "$JS.API.CONSUMER.INFO.{jobs}.workers", "$JS.API.CONSUMER.CREATE.{jobs}.workers",
          "$JS.API.CONSUMER.DURABLE.CREATE.{jobs}.workers",
          "$JS.API.CONSUMER.CREATE.{results}", "$JS.API.CONSUMER.CREATE.{results}.>",
          "$JS.API.CONSUMER.MSG.NEXT.{results}.>", "$JS.API.CONSUMER.DELETE.{results}.>",
          "conductor.{run}.lookups.>", "$JS.API.STREAM.CREATE.{lookups}",
          "$JS.API.STREAM.INFO.{lookups}", "$JS.API.STREAM.DELETE.{lookups}",
          "$JS.API.CONSUMER.CREATE.{lookups}", "$JS.API.CONSUMER.CREATE.{lookups}.>",
          "$JS.API.CONSUMER.MSG.NEXT.{lookups}.>"
        ] }}
        subscribe: {{ allow: [ "conductor.{run}.master", "conductor.{run}.join", "conductor.{run}.owner", "_INBOX.>" ] }}
        allow_responses: true
      }}
    }},
    {{
      user: worker, password: worker-pass
      permissions: {{
        publish: {{ allow: [
          "conductor.{run}.join", "conductor.{run}.master", "conductor.{run}.results",
          "$JS.API.STREAM.INFO.{jobs}", "$JS.API.CONSUMER.INFO.{jobs}.workers",
          "$JS.API.CONSUMER.MSG.NEXT.{jobs}.workers", "$JS.ACK.{jobs}.workers.>"
        ] }}
        subscribe: {{ allow: [ "conductor.{run}.worker.>", "conductor.{run}.all", "_INBOX.>" ] }}
      }}
    }}
  ]
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_under_least_privilege_permissions() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch = Scratch::new("permissions");
    let run = unique_run("least");
    let config = scratch.write("server.conf", &least_privilege(&run));
    let Some(server) = start_server(&scratch, &["-c", config.to_str().unwrap()]) else {
        return;
    };
    let url = format!("nats://127.0.0.1:{}", server.port);
    let report = Conductor::<u64, u64>::new("auth_triple")
        .nats(&url)
        .nats_auth(NatsAuth::new().user_password("master", "master-pass"))
        .nats_worker_auth(NatsAuth::new().user_password("worker", "worker-pass"))
        .run_name(&run)
        .worker_limit(2)
        .logging(false)
        .jobs(0..200)
        .run()
        .await
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(scratch.path("server.log")).unwrap_or_default();
            panic!("the run failed: {e}\n{log}")
        });
    let log = std::fs::read_to_string(scratch.path("server.log")).unwrap_or_default();
    assert_eq!(report.completed(), 200, "{report:?}\n{log}");
    assert!(
        !log.contains("Violation"),
        "the run needed more than the recipe: {log}"
    );

    // A worker's user can do a worker's part only: not read what workers tell the
    // master, not touch the run's streams.
    let worker =
        async_nats::ConnectOptions::with_user_and_password("worker".into(), "worker-pass".into())
            .connect(&url)
            .await
            .unwrap();
    let jetstream = async_nats::jetstream::new(worker.clone());
    assert!(jetstream
        .delete_stream(format!("CONDUCTOR_{run}_JOBS"))
        .await
        .is_err());
    let mut spy = worker
        .subscribe(format!("conductor.{run}.master"))
        .await
        .unwrap();
    worker.flush().await.unwrap();
    use futures_util::StreamExt;
    let heard = tokio::time::timeout(Duration::from_millis(500), spy.next()).await;
    assert!(
        !matches!(heard, Ok(Some(_))),
        "a worker's user read the master's subject"
    );
    // The server logs what it refuses: the check of the run above would have seen it.
    let log = std::fs::read_to_string(scratch.path("server.log")).unwrap_or_default();
    assert!(log.contains("Violation"), "{log}");
}
