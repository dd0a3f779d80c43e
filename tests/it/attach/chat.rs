//! The file through the chat sinks: Discord (webhook and DM, multipart)
//! and the Slack app (the three-step upload), exact bytes on the wire.

use super::*;

pub(crate) fn form_parts(
    request: &wiremock::Request,
) -> Vec<(String, Option<String>, String, Vec<u8>)> {
    let content_type = request
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let mut parts = Vec::new();
    let mut starts: Vec<usize> = body
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    starts.dedup();
    for pair in starts.windows(2) {
        let part = &body[pair[0] + delimiter.len() + 2..pair[1] - 2];
        let split = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let field = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap().to_string())
        };
        let kind = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Type: ")
                    .or_else(|| l.strip_prefix("content-type: "))
            })
            .unwrap_or_default()
            .to_string();
        parts.push((
            field(" name").unwrap_or_default(),
            field("filename"),
            kind,
            part[split + 4..].to_vec(),
        ));
    }
    parts
}

/// A message with a file as a Discord fake received it: the payload, then
/// the file's name, type and bytes.
fn discord_upload(request: &wiremock::Request) -> (Value, String, String, Vec<u8>) {
    let parts = form_parts(request);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].0, "payload_json");
    assert_eq!(parts[1].0, "files[0]");
    let payload = serde_json::from_slice(&parts[0].3).unwrap();
    let (_, name, kind, bytes) = parts[1].clone();
    (payload, name.unwrap(), kind, bytes)
}

#[tokio::test]
async fn one_download_serves_the_discord_webhook_the_discord_dm_and_the_mail() {
    let h = Harness::start().await;
    let smtp = SmtpServer::start(Security::Plain).await;
    let discord = wiremock::MockServer::start().await;
    let body = zip_bytes(200_000);
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .expect(1)
        .mount(&h.crayon)
        .await;
    let mail = attach_config(&smtp, "")
        .replace("sinks = [\"mail\"]", "sinks = [\"mail\", \"hook\", \"dm\"]");
    h.write_config(&format!(
        "[sinks.hook]\nkind = \"discord\"\nattach = true\n\
         webhook_url = \"https://discord.com/api/webhooks/42/hook-s3cret\"\napi_base = \"{uri}\"\n\
         [sinks.dm]\nkind = \"discord\"\nattach = true\nbot_token = \"bot-s3cret\"\napi_base = \"{uri}\"\n\
         {mail}\n[recipients.\"ann@example.com\"]\ndiscord_user_id = \"123456789012345678\"\n",
        uri = discord.uri()
    ));
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/42/hook-s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .expect(1)
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "555", "type": 1})))
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/channels/555/messages"))
        .and(header("authorization", "Bot bot-s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9"})))
        .expect(1)
        .mount(&discord)
        .await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = discord.received_requests().await.unwrap();
    let name = "New Commerce License-based Report #7.zip";
    for at in [
        "/api/v10/webhooks/42/hook-s3cret",
        "/api/v10/channels/555/messages",
    ] {
        let request = received.iter().find(|r| r.url.path() == at).unwrap();
        let (payload, filename, kind, bytes) = discord_upload(request);
        assert_eq!(payload["attachments"], json!([{"id": 0, "filename": name}]));
        assert!(
            payload["embeds"][0]["fields"]
                .to_string()
                .contains("Attached: "),
            "{payload}"
        );
        assert_eq!(
            (filename.as_str(), kind.as_str()),
            (name, "application/zip")
        );
        assert!(
            bytes == body,
            "{at}: {} bytes, not the served {}",
            bytes.len(),
            body.len()
        );
    }
    let delivered = smtp.delivered();
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert!(
        outbox(&h).iter().all(|row| row.1 == "sent"),
        "{:?}",
        outbox(&h)
    );
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
    let output = text(&out);
    assert!(!output.contains("hook-s3cret") && !output.contains("bot-s3cret"));
    assert_no_leak(&[&output]);
}

const SLACK_TOKEN: &str = "xoxb-1111-2222-sl4ckS3cret";

#[tokio::test]
async fn the_slack_app_uploads_the_exact_bytes_and_shares_them_into_the_dm() {
    let h = Harness::start().await;
    let slack = wiremock::MockServer::start().await;
    let body = zip_bytes(150_000);
    serve_file(&h, &body, Some("attachment; filename=\"licences.zip\"")).await;
    h.write_config(&format!(
        "[sinks.chat]\nkind = \"slack\"\nattach = true\nbot_token = \"{SLACK_TOKEN}\"\n\
         api_base = \"{}/api/\"\n[[routes]]\nsinks = [\"chat\"]\n",
        slack.uri()
    ));
    let upload_path = "/upload/v1/Zm9vYmFy-upload-s3cret";
    let answers = [
        (
            "users.lookupByEmail",
            json!({"ok": true, "user": {"id": "U0ANN"}}),
        ),
        (
            "conversations.open",
            json!({"ok": true, "channel": {"id": "D0ANNDM"}}),
        ),
        (
            "files.getUploadURLExternal",
            json!({"ok": true, "upload_url": format!("{}{upload_path}", slack.uri()), "file_id": "F0FILE"}),
        ),
        (
            "files.completeUploadExternal",
            json!({"ok": true, "files": [{"id": "F0FILE"}]}),
        ),
    ];
    for (name, answer) in answers {
        Mock::given(method("POST"))
            .and(path(format!("/api/{name}")))
            .and(header(
                "authorization",
                format!("Bearer {SLACK_TOKEN}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&slack)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(upload_path))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK - 150000"))
        .expect(1)
        .mount(&slack)
        .await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = slack.received_requests().await.unwrap();
    let at = |p: &str| received.iter().find(|r| r.url.path() == p).cloned();
    assert!(
        at("/api/chat.postMessage").is_none(),
        "the file message is the message"
    );
    let asked = at("/api/files.getUploadURLExternal").unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&asked.body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("filename".into(), "licences.zip".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("length".into(), body.len().to_string())),
        "{form:?}"
    );
    let upload = at(upload_path).unwrap();
    assert!(
        upload.body == body,
        "uploaded {} bytes, served {}",
        upload.body.len(),
        body.len()
    );
    assert!(
        upload.headers.get("authorization").is_none(),
        "the token went to the upload URL"
    );
    let complete: Value =
        serde_json::from_slice(&at("/api/files.completeUploadExternal").unwrap().body).unwrap();
    assert_eq!(
        complete["files"],
        json!([{"id": "F0FILE", "title": "licences.zip"}])
    );
    assert_eq!(complete["channel_id"], "D0ANNDM");
    let comment = complete["initial_comment"].as_str().unwrap();
    assert!(
        comment.starts_with("Export ready: New Commerce"),
        "{comment}"
    );
    assert_eq!(outbox(&h)[0].1, "sent");
    let output = text(&out);
    assert!(
        !output.contains(SLACK_TOKEN) && !output.contains("upload-s3cret"),
        "{output}"
    );
    assert_no_leak(&[&output]);
}

#[tokio::test]
async fn a_file_the_platform_refuses_goes_as_the_message_alone_never_dead() {
    let h = Harness::start().await;
    let discord = wiremock::MockServer::start().await;
    serve_file(&h, &zip_bytes(30_000), None).await;
    h.write_config(&format!(
        "[sinks.hook]\nkind = \"discord\"\nattach = true\n\
         webhook_url = \"https://discord.com/api/webhooks/42/hook-s3cret\"\napi_base = \"{}\"\n\
         [[routes]]\nsinks = [\"hook\"]\n",
        discord.uri()
    ));
    let at = "/api/v10/webhooks/42/hook-s3cret";
    Mock::given(method("POST"))
        .and(path(at))
        .and(wiremock::matchers::header_regex(
            "content-type",
            "^multipart/",
        ))
        .respond_with(
            ResponseTemplate::new(413)
                .set_body_json(json!({"code": 40005, "message": "Request entity too large"})),
        )
        .expect(1)
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path(at))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .expect(1)
        .mount(&discord)
        .await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = discord.received_requests().await.unwrap();
    let plain: Value = serde_json::from_slice(&received.last().unwrap().body).unwrap();
    let fields = plain["embeds"][0]["fields"].to_string();
    assert!(
        fields.contains("Not attached: the file was not accepted"),
        "{fields}"
    );
    assert_eq!(outbox(&h)[0].1, "sent");
}
