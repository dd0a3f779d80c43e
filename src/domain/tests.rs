//! Parsing the queue answer: the real sample, unknown statuses, wrong shapes,
//! dates, changes and duplicates.

use super::*;
use chrono::DateTime;

#[test]
fn parses_the_real_sample_answer() {
    let body = include_bytes!("../../tests/fixtures/exports-sample.json");
    let (snapshot, dups) = Snapshot::parse(body).unwrap();
    assert_eq!(snapshot.items.len(), 2);
    assert!(dups.is_empty());
    assert_eq!(snapshot.nr_of_days, 7);
    let item = &snapshot.items[&ExportId(2439)];
    assert_eq!(item.status, ExportStatus::Processed);
    assert!(item.downloadable);
    assert_eq!(
        item.created_date.to_rfc3339(),
        "2024-05-30T13:39:59.387+00:00"
    );
}

#[test]
fn unknown_status_is_kept_and_null_requester_tolerated() {
    let body = br#"{"Items":[{"Id":1,"Status":16,"Downloadable":false,"RequestedBy":null,
        "CreatedDate":"2024-05-30T13:39:59","Extra":true}],"NrOfDays":7}"#;
    let (snapshot, _) = Snapshot::parse(body).unwrap();
    let item = &snapshot.items[&ExportId(1)];
    assert_eq!(item.status, ExportStatus::Other(16));
    assert_eq!(item.status.code(), Some(16));
    assert_eq!(item.requested_by, None);
}

#[test]
fn bodies_not_of_the_documented_shape_are_errors() {
    for body in [
        &b"{}"[..],
        b"[]",
        b"{\"Items\":null,\"NrOfDays\":7}",
        b"{\"Items\":[{\"Id\":1}],\"NrOfDays\":7}",
        b"<html>maintenance</html>",
        b"",
    ] {
        assert!(
            Snapshot::parse(body).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn the_fast_date_path_reads_what_the_general_one_reads() {
    for text in [
        "2024-05-30T13:39:59.387",
        "2024-05-30T13:39:59",
        "2024-05-30T13:39:59.1",
        "2024-05-30T13:39:59.123456789",
        "2024-02-29T00:00:00.000",
        "1999-12-31T23:59:59.999",
    ] {
        let fast = crayon_date::parse(text);
        assert!(fast.is_some(), "{text}");
        assert_eq!(fast, crayon_date::parse_general(text), "{text}");
    }
    for text in [
        "2023-02-29T00:00:00",
        "2024-13-01T00:00:00",
        "2024-05-30T24:00:00",
        "2024-05-30T13:39:59.",
        "2024-05-30T13:39:59.1234567890",
        "2024-05-30 13:39:59",
        "2024-5-30T13:39:59",
        "not a date",
    ] {
        assert_eq!(
            crayon_date::parse_plain(text.as_bytes()),
            None,
            "{text} must take the general path"
        );
    }
    assert_eq!(
        crayon_date::parse("2024-05-30T13:39:59+02:00")
            .unwrap()
            .to_rfc3339(),
        "2024-05-30T11:39:59+00:00"
    );
}

#[test]
fn changes_skip_equal_items_and_come_in_id_order() {
    let item = |id: i64, status: i64| ExportItem {
        id: ExportId(id),
        status: ExportStatus::from(status),
        action_url: String::new(),
        downloadable: false,
        attempts: 1,
        action_name: String::new(),
        requested_by: None,
        created_date: DateTime::UNIX_EPOCH,
    };
    let snap = |items: Vec<ExportItem>| {
        Snapshot::from_answer(QueueAnswer {
            items,
            nr_of_days: 7,
        })
        .0
    };
    let before = snap(vec![item(1, 1), item(2, 1), item(3, 1)]);
    let after = snap(vec![item(4, 1), item(3, 1), item(2, 2)]);
    let changes: Vec<_> = Snapshot::changes(Some(&before), &after).collect();
    assert_eq!(
        changes,
        [
            Change::Gone(&before.items[&ExportId(1)]),
            Change::Changed(&before.items[&ExportId(2)], &after.items[&ExportId(2)]),
            Change::Appeared(&after.items[&ExportId(4)]),
        ]
    );
    assert_eq!(Snapshot::changes(None, &after).count(), 3);
}

#[test]
fn duplicate_ids_keep_the_first_and_are_reported() {
    let body = br#"{"Items":[
        {"Id":5,"Status":1,"Downloadable":false,"CreatedDate":"2024-05-30T13:39:59"},
        {"Id":5,"Status":2,"Downloadable":true,"CreatedDate":"2024-05-30T13:39:59"}],
        "NrOfDays":7}"#;
    let (snapshot, dups) = Snapshot::parse(body).unwrap();
    assert_eq!(dups, vec![ExportId(5)]);
    assert_eq!(snapshot.items[&ExportId(5)].status, ExportStatus::Queued);
}

#[test]
fn status_names_parse_in_any_case_and_unknown_names_are_kept() {
    let status = |json: &str| serde_json::from_str::<ExportStatus>(json).unwrap();
    assert_eq!(status("\"processed\""), ExportStatus::Processed);
    assert_eq!(status("\"FAILED\""), ExportStatus::Failed);
    assert_eq!(status("2"), ExportStatus::Processed);
    let unknown = status("\"Archived\"");
    assert_eq!(unknown, ExportStatus::OtherName("Archived".into()));
    assert_eq!((unknown.name(), unknown.code()), ("Unknown", None));
    assert_eq!(serde_json::to_string(&unknown).unwrap(), "\"Archived\"");
    assert_eq!(
        serde_json::to_string(&ExportStatus::Other(16)).unwrap(),
        "16"
    );
}
