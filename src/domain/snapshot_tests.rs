//! `parse_over` against the plain parse and the full diff.

use super::*;
use crate::domain::QueueAnswer;

fn body(items: &[(i64, i64, bool)]) -> Vec<u8> {
    let items: Vec<_> = items
        .iter()
        .map(|(id, status, downloadable)| {
            serde_json::json!({"Id": id, "Status": status, "Downloadable": downloadable,
                "ActionUrl": "a\\/b?x=1", "ActionName": format!("Report {id}"),
                "RequestedBy": null, "Attempts": null,
                "CreatedDate": "2024-05-30T13:39:59.387"})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"Items": items, "NrOfDays": 7})).unwrap()
}

fn owned(body: &[u8]) -> Snapshot {
    Snapshot::from_answer(serde_json::from_slice::<QueueAnswer>(body).unwrap()).0
}

#[test]
fn parses_exactly_what_the_owned_parse_reads() {
    let body = body(&[(3, 1, false), (1, 2, true), (3, 2, true)]);
    let polled = Snapshot::parse_over(&body, &mut None).unwrap();
    assert_eq!(polled.snapshot, owned(&body));
    assert_eq!(polled.duplicates, [ExportId(3)]);
    assert_eq!(
        polled.snapshot.items[&ExportId(1)].action_url,
        r"a\/b?x=1",
        "escaped: not borrowed"
    );
    assert!(polled.prior().is_none());
    assert_eq!(polled.changes().len(), 2);
}

#[test]
fn changes_over_the_stored_snapshot_match_the_full_diff() {
    let before = owned(&body(&[(1, 1, false), (2, 1, false), (3, 2, true)]));
    let after_body = body(&[(2, 2, true), (3, 2, true), (4, 1, false)]);
    let after = owned(&after_body);
    let mut stored = Some(before.clone());
    let polled = Snapshot::parse_over(&after_body, &mut stored).unwrap();
    assert!(stored.is_none(), "the stored snapshot is taken");
    assert_eq!(polled.snapshot, after);
    assert_eq!(
        polled.changes(),
        Snapshot::changes(Some(&before), &after).collect::<Vec<_>>()
    );
    assert_eq!(polled.prior().unwrap().items.len(), 2, "1 gone, 2 changed");
}

#[test]
fn a_bad_body_leaves_the_stored_snapshot_alone() {
    let before = owned(&body(&[(1, 1, false)]));
    let mut stored = Some(before.clone());
    assert!(Snapshot::parse_over(b"{\"Items\":[{\"Id\":1}],\"NrOfDays\":7}", &mut stored).is_err());
    assert_eq!(stored, Some(before));
}
