//! Peak memory of attaching the export file (#16), measured in-process
//! from `/proc/self/status` (`VmHWM`, the peak resident set):
//!
//! 1. download + spool: a 100 MiB file served chunked by a loopback fake
//!    of the Crayon API, streamed to the spool folder;
//! 2. Discord: that 100 MiB file sent as `files[0]` to a loopback fake
//!    webhook (the multipart body streams from the spool);
//! 3. email: a 10 MiB file (email's default `attach_max`) written as a
//!    `.eml` by the email sink; lettre builds the message in memory.
//!
//! Each step reports the peak's growth over the peak before it (the steps
//! run in this order so each one's growth is its own).
//! `cargo run --release --example attach_rss` (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crayon_export_bot::attach::{Fetched, Spool};
use crayon_export_bot::config::{load_from_str, SinkKind};
use crayon_export_bot::crayon::{CrayonClient, CrayonSettings};
use crayon_export_bot::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, EventKind, ExportId, RenderedMessage, Subject,
};
use crayon_export_bot::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads a request head; returns it and any body bytes read with it.
async fn head(socket: &mut TcpStream) -> (String, usize) {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&seen[..end]).into_owned();
            return (text, seen.len() - end - 4);
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), 0)
}

/// The fake Crayon API (token; `/download/` streams `size` bytes chunked)
/// and the fake Discord webhook (reads and drops the body, answers 200).
async fn serve(listener: TcpListener, size: u64) {
    loop {
        let (mut socket, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let (request, already) = head(&mut socket).await;
            if request.starts_with("POST /api/v1/connect/token/") {
                let body = r#"{"AccessToken":"t","ExpiresIn":3600}"#;
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(answer.as_bytes()).await;
            } else if request.contains("/download/") {
                stream_file(&mut socket, size).await;
            } else {
                drain_body(&mut socket, &request, already).await;
                let body = r#"{"id":"1"}"#;
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(answer.as_bytes()).await;
            }
            let _ = socket.shutdown().await;
        });
    }
}

async fn stream_file(socket: &mut TcpStream, size: u64) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    chunk[..4].copy_from_slice(b"PK\x03\x04");
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        let frame = format!("{n:x}\r\n");
        socket.write_all(frame.as_bytes()).await.unwrap();
        socket.write_all(&chunk[..n]).await.unwrap();
        socket.write_all(b"\r\n").await.unwrap();
        left -= n as u64;
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
}

async fn drain_body(socket: &mut TcpStream, head: &str, already: usize) {
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut left = length.saturating_sub(already);
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn client(base: &str) -> CrayonClient {
    let settings = CrayonSettings {
        base_url: base.parse().unwrap(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        username: "u".into(),
        password: Secret::new("p"),
        scope: "CustomerApi".into(),
        timeout: Duration::from_secs(30),
        max_body: 64 * MIB,
        ca_file: None,
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    CrayonClient::with_http_client(settings, http)
}

fn delivery(sink: &str, json: &str, recipient: Option<&str>) -> Delivery {
    let mut message = RenderedMessage::default();
    message.parts.insert("json".into(), json.into());
    message.parts.insert("subject".into(), "Your export".into());
    message
        .parts
        .insert("text".into(), "The file is attached.".into());
    message
        .parts
        .insert("html".into(), "<p>The file is attached.</p>".into());
    Delivery {
        id: DeliveryId(1),
        subject: Subject::Item(ExportId(7)),
        event: EventKind::Downloadable,
        sink: sink.into(),
        recipient: recipient.map(str::to_string),
        message,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        created_at: chrono::Utc::now(),
    }
}

async fn download(
    spool: &Spool,
    client: &CrayonClient,
    id: i64,
) -> Arc<crayon_export_bot::attach::Attachment> {
    let account = AccountId::default_account();
    let fetched = spool
        .fetch(client, &account, ExportId(id), "Report", 200 * MIB)
        .await;
    match fetched.unwrap() {
        Fetched::Ready(file) => file,
        Fetched::Unavailable(why) => panic!("{why}"),
    }
}

fn report(step: &str, before: u64, after: u64, took: Duration) {
    println!(
        "{step:<44} peak RSS {:>7.1} MiB -> {:>7.1} MiB  growth {:>6.1} MiB  ({:.2} s)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let big: u64 = 100 * MIB;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, big));
    let spool = Spool::open(&dir.path().join("state.db.spool")).unwrap();
    let crayon = client(&base);

    // Idle: everything built, one small request made (pools, allocator warm).
    crayon.check_credentials().await.unwrap();
    let idle = peak_kib();
    let started = Instant::now();
    let file = download(&spool, &crayon, 7).await;
    assert_eq!(file.size, big);
    let after_download = peak_kib();
    report(
        "download + spool, 100 MiB (chunked)",
        idle,
        after_download,
        started.elapsed(),
    );

    let config_text = format!(
        "[crayon]\nbase_url = \"{base}\"\nclient_id = \"c\"\nclient_secret = \"s\"\nusername = \"u\"\npassword = \"p\"\n\
         [sinks.hook]\nkind = \"discord\"\nattach = true\nattach_max = \"100MiB\"\n\
         webhook_url = \"{base}api/webhooks/1/tok\"\napi_base = \"{base}\"\n\
         [sinks.mail]\nkind = \"email\"\nsmtp = \"smtp://127.0.0.1:25\"\ntls = \"none\"\nfrom = \"b@example.com\"\nattach = true\n"
    );
    let mut config = load_from_str(
        &config_text,
        &dir.path().join("bot.toml"),
        &|_| None,
        Vec::new(),
    )
    .unwrap();
    if let Some(SinkKind::Email(mail)) = config.sinks.get_mut("mail").map(|s| &mut s.kind) {
        mail.pickup_dir = Some(dir.path().to_path_buf());
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let hook = crayon_export_bot::sinks::build(&config.sinks["hook"], &http, None, None).unwrap();
    let json = r#"{"content":"Your export is ready"}"#;
    let started = Instant::now();
    hook.send_with(&delivery("hook", json, None), Some(&file))
        .await
        .unwrap();
    let after_discord = peak_kib();
    report(
        "Discord files[0], 100 MiB (streamed)",
        after_download,
        after_discord,
        started.elapsed(),
    );

    spool.release(&AccountId::default_account(), ExportId(7));
    let (listener, small) = (TcpListener::bind("127.0.0.1:0").await.unwrap(), 10 * MIB);
    let small_base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, small));
    let file = download(&spool, &client(&small_base), 8).await;
    let mail = crayon_export_bot::sinks::build(&config.sinks["mail"], &http, None, None).unwrap();
    let before_mail = peak_kib();
    let started = Instant::now();
    let to = "ann@example.com";
    mail.send_with(&delivery("mail", "", Some(to)), Some(&file))
        .await
        .unwrap();
    report(
        "email .eml, 10 MiB (lettre, in memory)",
        before_mail,
        peak_kib(),
        started.elapsed(),
    );
}
