//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp folder,
//! started on a free loopback port (password auth, TLS with a test CA),
//! one per test binary run, a fresh database per test. Shared by the unit
//! contract suite (included with `#[path]`) and the integration tests.
//!
//! Without PostgreSQL installed the tests that need it print ONE line and
//! return; under `CI=true` a missing PostgreSQL fails them instead. As root,
//! the server runs as the `postgres` (or `nobody`) user via `runuser`. It is
//! stopped by a Drop guard, at process exit, and by a watchdog if the test
//! binary is killed.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser's password (a secret the tests look for in outputs).
pub const PG_PASSWORD: &str = "pg-Pw-9xq-S3cret";

/// A running cluster.
pub struct Cluster {
    pub port: u16,
    /// The test CA's certificate (PEM file): what `tls.ca_file` points at.
    pub ca_file: PathBuf,
    dir: PathBuf,
    postmaster: i32,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A new empty database's URL (`sslmode=disable`), or `None` when
/// PostgreSQL is not installed and this is not CI (one line printed).
pub fn fresh_db() -> Option<String> {
    let cluster = cluster()?;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    cluster.psql(&format!("CREATE DATABASE {name} STRATEGY = FILE_COPY"));
    Some(cluster.url(&name, "sslmode=disable"))
}

/// The shared cluster (started at the first call), `None` when skipped.
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER.get_or_init(start_or_skip).as_ref()
}

fn start_or_skip() -> Option<Cluster> {
    match find_bin_dir() {
        Some(bin) => {
            let cluster = Cluster::start(&bin);
            unsafe { libc::atexit(stop_at_exit) };
            Some(cluster)
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but PostgreSQL (initdb) is not installed: .ci/run installs it")
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: PostgreSQL tests NOT run: no initdb found (install the `postgresql` \
                 package, or set PG_BIN=/usr/lib/postgresql/<ver>/bin)"
            );
            None
        }
    }
}

extern "C" fn stop_at_exit() {
    if let Some(Some(cluster)) = CLUSTER.get() {
        cluster.stop();
    }
}

/// `$PG_BIN` (when set, the only place looked at: `PG_BIN=/nowhere` skips
/// the tests), the newest /usr/lib/postgresql/<ver>/bin, or initdb on PATH.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        let ver = p
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str());
        ver.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    if let Some(bin) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.exists())
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
}

impl Cluster {
    fn start(bin: &Path) -> Cluster {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("crayon-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let user = server_user();
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        let ca_file = write_certs(&dir);
        if let Some((uid, gid)) = user.as_ref().map(|u| u.1) {
            chown_tree(&dir, uid, gid);
        }
        let run = |program: &str, args: &[&str]| {
            let mut cmd = match &user {
                Some((name, _)) => {
                    let mut cmd = Command::new("runuser");
                    cmd.args(["-u", name, "--"]).arg(bin.join(program));
                    cmd
                }
                None => Command::new(bin.join(program)),
            };
            let out = cmd.args(args).output().expect("run a PostgreSQL program");
            assert!(
                out.status.success(),
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data_s = data.to_str().unwrap();
        let pw_arg = format!("--pwfile={}", pwfile.display());
        run(
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                &pw_arg,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on \
             -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
            dir = dir.display()
        );
        let log = dir.join("log");
        run(
            "pg_ctl",
            &[
                "-D",
                data_s,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        let postmaster = std::fs::read_to_string(data.join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        spawn_watchdog(postmaster, &dir);
        let _ = writeln!(
            std::io::stderr(),
            "test PostgreSQL cluster on 127.0.0.1:{port} started in {:?}",
            started.elapsed()
        );
        Cluster {
            port,
            ca_file,
            dir,
            postmaster,
        }
    }

    /// The URL of database `name` with the given query.
    pub fn url(&self, name: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/{name}?{query}",
            self.port
        )
    }

    /// Runs statements as the superuser, on one kept connection (used on
    /// its own thread: the sync client must not run inside a tokio runtime).
    pub fn psql(&self, sql: &str) {
        static ADMIN: std::sync::Mutex<Option<postgres::Client>> = std::sync::Mutex::new(None);
        let url = self.url("postgres", "sslmode=disable");
        let sql = sql.to_string();
        std::thread::spawn(move || {
            let mut admin = ADMIN.lock().unwrap_or_else(|p| p.into_inner());
            let client = admin
                .get_or_insert_with(|| postgres::Client::connect(&url, postgres::NoTls).unwrap());
            client.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
    }

    /// Immediate shutdown (SIGQUIT to the postmaster), then the folder goes.
    fn stop(&self) {
        unsafe { libc::kill(self.postmaster, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while unsafe { libc::kill(self.postmaster, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// As root: the unprivileged user the server runs as, with its ids.
fn server_user() -> Option<(String, (u32, u32))> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    ["postgres", "nobody"].iter().find_map(|name| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(name) && fields.len() > 3).then(|| {
                let ids = (fields[2].parse().ok()?, fields[3].parse().ok()?);
                Some((name.to_string(), ids))
            })?
        })
    })
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).unwrap();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A test CA (`ca.pem`) and the server's certificate for 127.0.0.1 and
/// localhost (`server.crt`, `server.key` with mode 0600).
fn write_certs(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.crt"), leaf.pem()).unwrap();
    let key_path = dir.join("server.key");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut perms = std::fs::metadata(&key_path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key_path, perms).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    ca_file
}

/// If the test binary dies (even SIGKILL), a shell waiting on it stops the
/// server and removes the folder.
fn spawn_watchdog(postmaster: i32, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -QUIT {postmaster} \
         2>/dev/null; sleep 1; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
