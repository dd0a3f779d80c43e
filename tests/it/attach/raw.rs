//! What wiremock cannot send: a chunked body and a body cut short, from a
//! raw loopback Crayon API written byte for byte.

use super::*;

pub(crate) struct RawCrayon {
    pub url: String,
    queue: Arc<Mutex<Value>>,
    downloads: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl RawCrayon {
    pub(crate) async fn start() -> RawCrayon {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let queue = Arc::new(Mutex::new(json!({"Items": [], "NrOfDays": 7})));
        let downloads: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let (q, d) = (queue.clone(), downloads.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (q, d) = (q.clone(), d.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut socket).await;
                    let answer = if head.starts_with("POST /api/v1/connect/token/") {
                        json_answer(&json!({"AccessToken": TOKEN, "ExpiresIn": 3600}))
                    } else if head.starts_with("GET /api/v1/exports/ ") {
                        json_answer(&q.lock().unwrap())
                    } else {
                        let next = d.lock().unwrap().pop_front();
                        next.unwrap_or_else(|| b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec())
                    };
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        RawCrayon {
            url,
            queue,
            downloads,
        }
    }

    pub(crate) fn set_items(&self, items: Vec<Value>) {
        *self.queue.lock().unwrap() = json!({"Items": items, "NrOfDays": 7});
    }

    /// The next download answers with exactly these bytes.
    pub(crate) fn push_download(&self, raw: Vec<u8>) {
        self.downloads.lock().unwrap().push_back(raw);
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    // A token POST has a small form body; it is not needed.
    String::from_utf8_lossy(&seen).into_owned()
}

fn json_answer(value: &Value) -> Vec<u8> {
    let body = value.to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `body` as a chunked answer in chunks of `size`.
pub(crate) fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for chunk in body.chunks(size) {
        out.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// An answer promising `body.len()` bytes that ends after `sent` of them.
fn cut(body: &[u8], sent: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body[..sent]);
    out
}

/// The harness's config, pointed at the raw Crayon API instead.
fn raw_config(h: &Harness, raw: &RawCrayon, sink: &str) {
    h.write_config(sink);
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    let config = config.replace(&h.crayon.uri(), &raw.url);
    std::fs::write(h.config_path(), config).unwrap();
}

async fn raw_baseline_then(h: &Harness, raw: &RawCrayon) -> std::process::Output {
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    raw.set_items(vec![ready(7)]);
    h.bot(&["once"]).await
}

#[tokio::test]
async fn a_chunked_body_is_streamed_whole_and_over_the_cap_it_is_refused() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, "attach_max = \"64KiB\""));
    let body = zip_bytes(50_000);
    raw.push_download(chunked(&body, 1000));

    let out = raw_baseline_then(&h, &raw).await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );

    // A chunked body has no Content-Length: the cap is found while streaming.
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, "attach_max = \"64KiB\""));
    raw.push_download(chunked(&zip_bytes(100_000), 4096));
    let out = raw_baseline_then(&h, &raw).await;
    let delivered = server.delivered();
    let mail = parse(&delivered[0]);
    assert_eq!(
        mail.ctype.mimetype,
        "multipart/alternative",
        "{}",
        text(&out)
    );
    assert!(text_body(&mail).contains("larger than 64.0 KiB"));
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
}

#[tokio::test]
async fn a_body_cut_mid_stream_leaves_no_file_and_the_retry_sends_it_whole() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, ""));
    let body = zip_bytes(80_000);
    raw.push_download(cut(&body, 30_000));

    let first = raw_baseline_then(&h, &raw).await;
    assert!(server.delivered().is_empty(), "{}", text(&first));
    assert_eq!(outbox(&h)[0].1, "pending");
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));

    raw.push_download(chunked(&body, 7000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.bot(&["once"]).await;
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&second));
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert_no_leak(&[&text(&first), &text(&second)]);
}
