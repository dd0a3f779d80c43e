//! A small but real SMTP server for the email tests, on 127.0.0.1:0 inside
//! the test process: EHLO/HELO, STARTTLS (tokio-rustls, when offered),
//! implicit TLS, AUTH PLAIN, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP,
//! QUIT. Replies to DATA and to RCPT (per address) can be scripted (`451`,
//! `550`, …). Every command is recorded with whether it arrived over TLS, so
//! a test can prove that nothing was sent in clear, and every session's end
//! with whether the client said QUIT first. Plus a test CA made with rcgen.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// How the server protects sessions.
#[derive(Clone)]
pub enum Security {
    /// Plain SMTP; STARTTLS is not offered.
    Plain,
    /// Plain greeting, STARTTLS offered with this certificate.
    StartTls(Arc<ServerConfig>),
    /// TLS from the first byte (smtps).
    Implicit(Arc<ServerConfig>),
}

/// One message the client sent through DATA, with the server's answer.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reply to the end of DATA (`250 …` when accepted).
    pub answer: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    pub tls: bool,
    /// The user of AUTH PLAIN, if the client authenticated.
    pub auth_user: Option<String>,
}

/// One command line as the server got it.
#[derive(Debug, Clone)]
pub struct Command {
    pub line: String,
    pub tls: bool,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    commands: Vec<Command>,
    data_replies: VecDeque<String>,
    /// When set, AUTH is refused with this reply; `{password}` in it is
    /// replaced by the password the client sent (a server that echoes it).
    auth_refusal: Option<String>,
    /// The next RCPT answers for an address (lowercase); then 250.
    rcpt_replies: HashMap<String, VecDeque<String>>,
    /// Every RCPT an address got, with the answer.
    rcpts: Vec<(String, String)>,
    /// One entry per finished session: did the client send QUIT?
    sessions: Vec<bool>,
}

/// A running server; stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    pub async fn start(security: Security) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(accept_loop(listener, security, shared.clone()));
        SmtpServer { port, shared, task }
    }

    /// The next DATA answers, in order (e.g. `"451 4.3.0 try again later"`);
    /// after them every message is accepted with 250.
    pub fn answer_data_with(&self, replies: &[&str]) {
        let mut shared = self.shared.lock().unwrap();
        shared.data_replies = replies.iter().map(|r| r.to_string()).collect();
    }

    /// Refuses every AUTH with `reply` (e.g. `"535 5.7.8 bad {password}"`).
    pub fn refuse_auth_with(&self, reply: &str) {
        self.shared.lock().unwrap().auth_refusal = Some(reply.to_string());
    }

    /// Accepts AUTH again (the password was fixed on the server side).
    pub fn accept_auth(&self) {
        self.shared.lock().unwrap().auth_refusal = None;
    }

    /// The next RCPT TO `address` get `replies`, in order (e.g.
    /// `"550 5.1.1 no such user"`); after them it is accepted.
    pub fn answer_rcpt_with(&self, address: &str, replies: &[&str]) {
        let mut shared = self.shared.lock().unwrap();
        shared.rcpt_replies.insert(
            address.to_lowercase(),
            replies.iter().map(|r| r.to_string()).collect(),
        );
    }

    /// Every RCPT TO the server got: (address, the answer).
    pub fn rcpts(&self) -> Vec<(String, String)> {
        self.shared.lock().unwrap().rcpts.clone()
    }

    /// The EHLO arguments, in order.
    pub fn ehlo_names(&self) -> Vec<String> {
        self.commands()
            .iter()
            .filter_map(|c| {
                let (verb, arg) = c.line.split_once(' ')?;
                verb.eq_ignore_ascii_case("EHLO")
                    .then(|| arg.trim().to_string())
            })
            .collect()
    }

    /// One entry per session that has ended: true when QUIT came first.
    pub fn sessions(&self) -> Vec<bool> {
        self.shared.lock().unwrap().sessions.clone()
    }

    /// Every message sent through DATA, accepted or not.
    pub fn attempts(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The messages the server accepted (answered 2xx).
    pub fn delivered(&self) -> Vec<Received> {
        let mut all = self.attempts();
        all.retain(|r| r.answer.starts_with('2'));
        all
    }

    pub fn commands(&self) -> Vec<Command> {
        self.shared.lock().unwrap().commands.clone()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn accept_loop(listener: TcpListener, security: Security, shared: Arc<Mutex<Shared>>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (security, shared) = (security.clone(), shared.clone());
        tokio::spawn(async move {
            let _ = connection(tcp, security, shared).await;
        });
    }
}

async fn connection(
    tcp: TcpStream,
    security: Security,
    shared: Arc<Mutex<Shared>>,
) -> std::io::Result<()> {
    match security {
        Security::Plain => session(Box::new(tcp), false, false, true, &shared)
            .await
            .map(drop),
        Security::Implicit(config) => {
            let tls = TlsAcceptor::from(config).accept(tcp).await?;
            session(Box::new(tls), true, false, true, &shared)
                .await
                .map(drop)
        }
        Security::StartTls(config) => {
            let upgrade = session(Box::new(tcp), false, true, true, &shared).await?;
            if let Some(plain) = upgrade {
                let tls = TlsAcceptor::from(config).accept(plain).await?;
                session(Box::new(tls), true, false, false, &shared).await?;
            }
            Ok(())
        }
    }
}

/// State of one SMTP transaction.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    auth_user: Option<String>,
}

/// Runs one session until QUIT or EOF; returns the stream when the client
/// asked for STARTTLS (only when it is offered). A session continued after
/// STARTTLS gets no new greeting.
async fn session(
    stream: Box<dyn Io>,
    tls: bool,
    offer_starttls: bool,
    greet: bool,
    shared: &Mutex<Shared>,
) -> std::io::Result<Option<Box<dyn Io>>> {
    let mut io = BufReader::new(stream);
    if greet {
        reply(&mut io, "220 localhost ESMTP test server").await?;
    }
    let mut tx = Transaction::default();
    loop {
        let Some(line) = read_line(&mut io).await? else {
            shared.lock().unwrap().sessions.push(false);
            return Ok(None);
        };
        shared.lock().unwrap().commands.push(Command {
            line: line.clone(),
            tls,
        });
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => ehlo(&mut io, tls, offer_starttls).await?,
            "HELO" | "NOOP" => reply(&mut io, "250 OK").await?,
            "STARTTLS" if offer_starttls && !tls => {
                reply(&mut io, "220 2.0.0 ready to start TLS").await?;
                return Ok(Some(io.into_inner()));
            }
            "AUTH" => {
                let refusal = shared.lock().unwrap().auth_refusal.clone();
                auth(&mut io, &line, &mut tx, refusal).await?
            }
            "MAIL" => {
                tx.mail_from = Some(angle(&line));
                tx.rcpt_to.clear();
                reply(&mut io, "250 2.1.0 OK").await?;
            }
            "RCPT" => rcpt(&mut io, &line, &mut tx, shared).await?,
            "DATA" => data(&mut io, &mut tx, tls, shared).await?,
            "RSET" => {
                tx.mail_from = None;
                tx.rcpt_to.clear();
                reply(&mut io, "250 OK").await?;
            }
            "QUIT" => {
                shared.lock().unwrap().sessions.push(true);
                reply(&mut io, "221 2.0.0 bye").await?;
                return Ok(None);
            }
            _ => reply(&mut io, "502 5.5.1 command not implemented").await?,
        }
    }
}

/// RCPT TO: the scripted answer for the address, else 250; only accepted
/// addresses join the transaction.
async fn rcpt(
    io: &mut BufReader<Box<dyn Io>>,
    line: &str,
    tx: &mut Transaction,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    let address = angle(line);
    let answer = {
        let mut shared = shared.lock().unwrap();
        let answer = shared
            .rcpt_replies
            .get_mut(&address.to_lowercase())
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| "250 2.1.5 OK".to_string());
        shared.rcpts.push((address.clone(), answer.clone()));
        answer
    };
    if answer.starts_with('2') {
        tx.rcpt_to.push(address);
    }
    reply(io, &answer).await
}

async fn ehlo(
    io: &mut BufReader<Box<dyn Io>>,
    tls: bool,
    offer_starttls: bool,
) -> std::io::Result<()> {
    reply(io, "250-localhost greets you").await?;
    if offer_starttls && !tls {
        reply(io, "250-STARTTLS").await?;
    }
    reply(io, "250-AUTH PLAIN").await?;
    reply(io, "250 SIZE 10485760").await
}

/// AUTH PLAIN with the initial response inline or after a 334.
async fn auth(
    io: &mut BufReader<Box<dyn Io>>,
    line: &str,
    tx: &mut Transaction,
    refusal: Option<String>,
) -> std::io::Result<()> {
    let mut words = line.split_whitespace().skip(1);
    if !words
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"))
    {
        return reply(io, "504 5.5.4 only PLAIN").await;
    }
    let encoded = match words.next() {
        Some(e) => e.to_string(),
        None => {
            reply(io, "334 ").await?;
            read_line(io).await?.unwrap_or_default()
        }
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    let fields: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    match fields.as_slice() {
        [_, _, password] if refusal.is_some() => {
            let password = String::from_utf8_lossy(password);
            let text = refusal.unwrap_or_default().replace("{password}", &password);
            reply(io, &text).await
        }
        [_, user, _password] => {
            tx.auth_user = Some(String::from_utf8_lossy(user).into_owned());
            reply(io, "235 2.7.0 authenticated").await
        }
        _ => reply(io, "501 5.5.2 bad AUTH PLAIN").await,
    }
}

async fn data(
    io: &mut BufReader<Box<dyn Io>>,
    tx: &mut Transaction,
    tls: bool,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    if tx.mail_from.is_none() || tx.rcpt_to.is_empty() {
        return reply(io, "503 5.5.1 need MAIL and RCPT first").await;
    }
    reply(io, "354 end data with <CR><LF>.<CR><LF>").await?;
    let mut body = String::new();
    while let Some(line) = read_line(io).await? {
        if line == "." {
            break;
        }
        body.push_str(line.strip_prefix('.').unwrap_or(&line));
        body.push_str("\r\n");
    }
    let answer = shared.lock().unwrap().data_replies.pop_front();
    let answer = answer.unwrap_or_else(|| "250 2.0.0 queued".to_string());
    shared.lock().unwrap().received.push(Received {
        answer: answer.clone(),
        mail_from: tx.mail_from.clone().unwrap_or_default(),
        rcpt_to: tx.rcpt_to.clone(),
        data: body,
        tls,
        auth_user: tx.auth_user.clone(),
    });
    tx.mail_from = None;
    tx.rcpt_to.clear();
    reply(io, &answer).await
}

/// The address between `<` and `>` of a MAIL/RCPT line.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

async fn read_line(io: &mut BufReader<Box<dyn Io>>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if io.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

async fn reply(io: &mut BufReader<Box<dyn Io>>, text: &str) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(format!("{text}\r\n").as_bytes()).await?;
    stream.flush().await
}

/// A throw-away CA and a server certificate it signed for `localhost` and
/// 127.0.0.1.
pub struct TestCa {
    /// The CA certificate, PEM: what `tls.ca_file` points at.
    pub ca_pem: String,
    /// A rustls server config presenting the server certificate.
    pub server: Arc<ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "crayon-export-bot test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}
