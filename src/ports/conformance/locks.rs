//! What the locker must do across nodes (`Locks::Cluster`, two nodes in
//! this process sharing one PostgreSQL cluster the test starts): one holder
//! per upload, a newcomer on another node gets the lock within a second by
//! asking the holder to let go, background work never interrupts, and a
//! node that dies loses its locks.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::postgres::PgCluster;
use crate::backends::pg_locks::PgLocks;
use crate::ports::locks::Locks;

fn node(cluster: &PgCluster, wait: Duration) -> Locks {
    Locks::Cluster(PgLocks::new(&cluster.url, wait, CancellationToken::new()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_on_another_node_gets_the_lock_within_a_second() {
    let cluster = PgCluster::start();
    let (a, b) = (node(&cluster, Duration::from_secs(5)), node(&cluster, Duration::from_secs(5)));
    let id = Uuid::now_v7();
    let held = a.lock(id).await.unwrap();
    let asked = held.cancelled().clone();
    // The holder commits what it has and lets go once asked, as a PATCH does.
    let holder = tokio::spawn(async move {
        held.cancelled().cancelled().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
    });
    let t = Instant::now();
    let mine = b.lock(id).await.expect("the lock, handed over");
    assert!(t.elapsed() < Duration::from_secs(1), "hand-over took {:?}", t.elapsed());
    assert!(asked.is_cancelled(), "the holder was asked to let go");
    holder.await.unwrap();
    // And back: node A asks node B the same way.
    let back = tokio::spawn(async move {
        mine.cancelled().cancelled().await;
        drop(mine);
    });
    let t = Instant::now();
    let _again = a.lock(id).await.expect("handed back");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    back.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_lets_go_times_the_newcomer_out_and_other_uploads_do_not_wait() {
    let cluster = PgCluster::start();
    let (a, b) = (node(&cluster, Duration::from_secs(5)), node(&cluster, Duration::from_millis(600)));
    let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
    let _stubborn = a.lock(id).await.unwrap();
    let t = Instant::now();
    assert!(b.lock(id).await.is_err(), "never two holders");
    assert!(t.elapsed() >= Duration::from_millis(500), "waited its time: {:?}", t.elapsed());
    let t = Instant::now();
    let _other = b.lock(other).await.expect("another upload is free");
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_never_interrupts_a_holder_and_a_released_lock_is_free() {
    let cluster = PgCluster::start();
    let (a, b) = (node(&cluster, Duration::from_secs(5)), node(&cluster, Duration::from_secs(5)));
    let id = Uuid::now_v7();
    let held = a.lock(id).await.unwrap();
    assert!(b.try_lock(id).await.is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.cancelled().is_cancelled(), "try_lock asks nobody to let go");
    drop(held);
    let mut free = None;
    for _ in 0..40 {
        free = b.try_lock(id).await;
        if free.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(free.is_some(), "released on the database too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_session_dies_loses_its_locks_and_its_holders_are_told() {
    let cluster = PgCluster::start();
    let (a, b) = (node(&cluster, Duration::from_secs(5)), node(&cluster, Duration::from_secs(5)));
    let id = Uuid::now_v7();
    let held = a.lock(id).await.unwrap();
    let Locks::Cluster(pg) = &a else { unreachable!() };
    let pid = pg.session_pid().await.expect("a session");
    let (admin, connection) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    // Node A's holder is never asked: its session is simply gone.
    let t = Instant::now();
    let _mine = b.lock(id).await.expect("the dead session's lock is free");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    tokio::time::timeout(Duration::from_secs(2), held.cancelled().cancelled())
        .await
        .expect("the holder on the node that lost its session is told");
    drop(held);
    // Node A opens a new session for its next lock.
    let next = Uuid::now_v7();
    assert!(a.lock(next).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_skips_the_lock_only_while_nobody_holds_it_and_sees_what_the_holder_stored() {
    use crate::backends::pg_meta::PgMeta;
    use crate::ports::meta::{MetaStore, StatusRead};
    let cluster = PgCluster::start();
    let meta = MetaStore::Postgres(std::sync::Arc::new(PgMeta::connect(&cluster.url).await.unwrap()));
    let locks = node(&cluster, Duration::from_secs(5));
    let mut rec = crate::record::UploadRecord::new(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Some(100),
        None,
        crate::record::Concat::None,
    );
    meta.insert_new(&rec).await.unwrap();
    let id = rec.id;
    assert!(matches!(meta.status_unless_writing(id).await.unwrap(), StatusRead::Settled(Some(_))));
    let missing = Uuid::now_v7();
    assert!(matches!(meta.status_unless_writing(missing).await.unwrap(), StatusRead::Settled(None)));
    // A writer holds it: the reader must take the lock (which asks it to stop).
    let held = locks.lock(id).await.unwrap();
    assert!(matches!(meta.status_unless_writing(id).await.unwrap(), StatusRead::Writing));
    rec.offset = crate::record::Offset(40);
    meta.put(&rec).await.unwrap();
    drop(held);
    // Let go (the unlock is sent as the lock drops): the read after it sees
    // the holder's offset.
    let t = Instant::now();
    let seen = loop {
        if let StatusRead::Settled(Some(s)) = meta.status_unless_writing(id).await.unwrap() {
            break s.offset.0;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "still locked after the holder let go");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen, 40);
}
