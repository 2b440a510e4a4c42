//! What the event bus must do across nodes (`EventBus::Cluster`, nodes in
//! this process on one PostgreSQL cluster the test starts): a subscriber on
//! one node sees, in one order, the events made through every node, and
//! any node replays after a `Last-Event-ID`, including one started later.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::postgres::PgCluster;
use crate::asset::AssetInfo;
use crate::backends::pg_events::PgEvents;
use crate::events::{Kind, Resume};
use crate::ports::events::EventBus;
use crate::record::{Concat, UploadRecord};

async fn node(cluster: &PgCluster) -> EventBus {
    EventBus::Cluster(Arc::new(PgEvents::start(&cluster.url).await.unwrap()))
}

fn asset() -> UploadRecord {
    let mut rec = UploadRecord::new(Uuid::now_v7(), Uuid::now_v7(), Some(10), None, Concat::None);
    rec.asset = Some(AssetInfo::new(Some("a.bin".into()), None, Default::default()));
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_events_reach_every_node_in_one_order_and_replay_anywhere() {
    let cluster = PgCluster::start();
    let (one, three) = (node(&cluster).await, node(&cluster).await);
    let mut live = one.subscribe();
    let (a, b) = (asset(), asset());
    // Made through two nodes, interleaved.
    three.emit(Kind::Created, &a);
    one.emit(Kind::Created, &b);
    three.emit(Kind::Processing, &a);
    three.emit(Kind::Ready, &a);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(5), live.recv()).await.expect("an event").unwrap();
        seen.push(ev);
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one order: {seqs:?}");
    let of_a: Vec<Kind> = seen.iter().filter(|e| e.record.id == a.id).map(|e| e.kind).collect();
    assert_eq!(of_a, [Kind::Created, Kind::Processing, Kind::Ready], "node three's events, in its order");
    assert!(seen.iter().any(|e| e.record.id == b.id && e.kind == Kind::Created));

    // Replay after the first event, on the node that saw it live and on
    // one started only now (a client reconnecting elsewhere).
    let after = one.event_id(seen[0].seq);
    let later = node(&cluster).await;
    for bus in [&one, &later] {
        match bus.resume(&after) {
            Resume::From(events) => {
                assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[1..].to_vec())
            }
            Resume::Gap | Resume::Ahead(_) => panic!("a gap for a known id"),
        }
    }
    // Made by another node a moment ago (this one has not read it yet).
    let just_ahead = later.event_id(seqs[3] + 2);
    assert!(
        matches!(later.resume(&just_ahead), Resume::Ahead(_)),
        "an id a moment ahead waits for its events"
    );
    assert!(matches!(later.resume("c999999"), Resume::Gap), "an id from the future is a gap");
    assert!(matches!(later.resume("nonsense"), Resume::Gap));
}
