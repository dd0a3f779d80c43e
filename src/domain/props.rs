//! Property tests of the queue parser: the body is whatever the API (or
//! something pretending to be it) sent, so any JSON value, any near miss of
//! the documented shape and any bytes must parse or fail, never panic; and
//! what parses must survive the diff.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::diff::{diff, DiffOptions};
use chrono::{DateTime, Utc};

/// Any JSON value: scalars at their extremes, strings with control and
/// non-ASCII characters, nested arrays and objects.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names: mostly the API's own (and near misses), sometimes anything.
fn field_name() -> impl Strategy<Value = String> {
    let known = [
        "Items",
        "NrOfDays",
        "Id",
        "Status",
        "ActionUrl",
        "Downloadable",
        "Attempts",
        "ActionName",
        "RequestedBy",
        "CreatedDate",
        "items",
        "id",
        "",
    ];
    prop_oneof![
        3 => prop::sample::select(known.to_vec()).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Values a field of the right name might carry: the right type at its
/// edges, the wrong type, dates that almost parse.
fn field_value() -> impl Strategy<Value = Value> {
    let dates = [
        "2024-05-30T13:39:59.387",
        "2024-05-30T13:39:59Z",
        "2024-05-30T13:39:59+14:00",
        "+262142-12-31T23:59:59",
        "-262143-01-01T00:00:00",
        "2024-02-30T00:00:00",
        "2024-05-30",
        "",
    ];
    prop_oneof![
        prop::sample::select(dates.to_vec()).prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, 2, 4, 8, -1, i64::MIN, i64::MAX]).prop_map(Value::from),
        prop::sample::select(vec![0u64, 7, u64::from(u32::MAX), u64::MAX]).prop_map(Value::from),
        Just(json!(7.5)),
        Just(json!(-0.0)),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        any::<String>().prop_map(Value::from),
        any_json(),
    ]
}

/// A value of the right type for `field` (at its edges, dates included).
fn good_value(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "Id" | "Status" | "Attempts" => any::<i64>().prop_map(Value::from).boxed(),
        "Downloadable" => any::<bool>().prop_map(Value::from).boxed(),
        "CreatedDate" => prop_oneof![
            prop::sample::select(vec![
                "2024-05-30T13:39:59.387",
                "2024-05-30T13:39:59Z",
                "+262142-12-31T23:59:59",
                "-262143-01-01T00:00:00",
            ])
            .prop_map(Value::from),
            (-8_000_000_000_000i64..8_000_000_000_000).prop_map(|s| {
                Value::from(
                    DateTime::<Utc>::from_timestamp(s, 0)
                        .unwrap_or_default()
                        .format("%Y-%m-%dT%H:%M:%S%.3f")
                        .to_string(),
                )
            }),
        ]
        .boxed(),
        _ => prop::option::of(any::<String>())
            .prop_map(|s| s.map_or(Value::Null, Value::from))
            .boxed(),
    }
}

/// An object with some of the item fields, each usually of the right type,
/// sometimes odd.
fn near_item() -> impl Strategy<Value = Value> {
    const FIELDS: [&str; 8] = [
        "Id",
        "Status",
        "ActionUrl",
        "Downloadable",
        "Attempts",
        "ActionName",
        "RequestedBy",
        "CreatedDate",
    ];
    let slots: Vec<_> = FIELDS
        .iter()
        .map(|name| {
            let value = prop_oneof![9 => good_value(name), 1 => field_value()];
            prop::option::weighted(0.97, value).prop_map(move |v| (*name, v))
        })
        .collect();
    slots.prop_map(|slots| {
        let map: Map<String, Value> = slots
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
            .collect();
        Value::Object(map)
    })
}

/// A body close to `{"Items": [...], "NrOfDays": n}`.
fn near_queue() -> impl Strategy<Value = Value> {
    let items = prop::collection::vec(prop_oneof![9 => near_item(), 1 => any_json()], 0..5);
    let days = prop_oneof![4 => any::<u32>().prop_map(Value::from), 1 => field_value()];
    (items, prop::option::weighted(0.95, days)).prop_map(|(items, days)| {
        let mut map = Map::new();
        map.insert("Items".into(), Value::Array(items));
        if let Some(days) = days {
            map.insert("NrOfDays".into(), days);
        }
        Value::Object(map)
    })
}

/// Parses, and when it parses, runs the diff both ways and computes every
/// expiry, as a poll and the renderer would.
fn parse_and_use(body: &[u8]) {
    if let Ok((snapshot, _)) = Snapshot::parse(body) {
        let options = DiffOptions {
            max_age: std::time::Duration::from_secs(3 * 86_400),
        };
        let now = Utc::now();
        let empty = Snapshot::default();
        let _ = diff(None, &snapshot, now, options);
        let _ = diff(Some(&snapshot), &empty, now, options);
        let _ = diff(Some(&empty), &snapshot, now, options);
        for item in snapshot.items.values() {
            let _ = item.expires_at(snapshot.nr_of_days);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_json_value_parses_or_errors(value in any_json()) {
        parse_and_use(&serde_json::to_vec(&value).unwrap());
        let wrapped = json!({ "Items": [value.clone()], "NrOfDays": value });
        parse_and_use(&serde_json::to_vec(&wrapped).unwrap());
    }

    #[test]
    fn near_misses_of_the_queue_shape_parse_or_error(value in near_queue()) {
        parse_and_use(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn any_bytes_parse_or_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_and_use(&bytes);
    }
}

#[test]
fn the_near_miss_generator_also_makes_bodies_that_parse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let items_parsed: usize = (0..500)
        .filter_map(|_| {
            let value = near_queue().new_tree(&mut runner).unwrap().current();
            Snapshot::parse(&serde_json::to_vec(&value).unwrap()).ok()
        })
        .map(|(snapshot, _)| snapshot.items.len())
        .sum();
    assert!(
        items_parsed > 50,
        "the generator rarely reaches the parser's success path: {items_parsed} items"
    );
}
