//! The event bus across nodes: every node's asset events in one order, on
//! one PostgreSQL, with `Last-Event-ID` replay on any node.
//!
//! `emit` never waits: the event goes to this node's writer task, which
//! appends it to the `tusk_events` table (numbered by a sequence, under a
//! transaction-level advisory lock so that numbers commit in order and no
//! reader ever sees a later number before an earlier one) and sends
//! `NOTIFY tusk_events`. Each node's reader listens, reads what is new past
//! the last number it has, and hands it to this node's subscribers and to
//! its bounded in-memory history, which `resume` answers from. The reader
//! starts with the newest stored events, so a client that reconnects to
//! another node (its first one gone) replays from where it was. The table
//! keeps the newest `KEEP` events; older ids are a gap, as on one node.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::events::{Event, Kind, ProgressGate, Resume};
use crate::record::UploadRecord;

const CHANNEL: &str = "tusk_events";
/// Events kept in the table and in each node's memory for replay...
const KEEP: i64 = 4096;
/// ...and at most about this many bytes of records in memory (records
/// carry up to 16 KiB of metadata: 4,096 of the largest would be 256 MiB).
const KEEP_BYTES: usize = 8 << 20;
/// Serialises appends across nodes, so numbers commit in order.
const APPEND_LOCK: i64 = 0x7475_736b_0002;
/// Events waiting for the writer at most (each a copy of its record).
const QUEUE: usize = 1024;
/// A reader that hears nothing looks anyway this often (a lost NOTIFY).
const POLL: Duration = Duration::from_secs(1);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tusk_events (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        project_id uuid NOT NULL,
        record bytea NOT NULL
    )";

/// How far past this node's newest event a `Last-Event-ID` may be and still
/// be taken as made by another node a moment ago (its reader catches up);
/// further is an id this database never made.
const AHEAD: u64 = 4096;

pub struct PgEvents {
    tx: broadcast::Sender<Arc<Event>>,
    writer: mpsc::Sender<(Kind, UploadRecord)>,
    history: Arc<Mutex<History>>,
    progress: ProgressGate,
    /// Ends the reader when the bus goes.
    stop: tokio_util::sync::CancellationToken,
}

/// The newest events, with the stored size of each record.
#[derive(Default)]
struct History {
    events: VecDeque<(Arc<Event>, usize)>,
    bytes: usize,
}

impl Drop for PgEvents {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn kind_of(s: &str) -> Option<Kind> {
    [Kind::Created, Kind::Progress, Kind::Processing, Kind::Ready, Kind::Failed, Kind::Deleted]
        .into_iter()
        .find(|k| k.as_str() == s)
}

impl PgEvents {
    /// Connects a writer and a reader to `url`, making the table if needed,
    /// and loads the newest stored events into the replay history.
    pub async fn start(url: &str) -> Result<PgEvents, tokio_postgres::Error> {
        let config = super::pg_meta::client_config(url)?;
        let (writer_client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "the event writer's database connection ended");
            }
        });
        writer_client.batch_execute(SCHEMA).await?;

        let (tx, _) = broadcast::channel(1024);
        let history = Arc::new(Mutex::new(History::default()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (writer, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write(config.clone(), writer_client, queue));
        let last = load_newest(&config, &history).await?;
        tokio::spawn(read(config, tx.clone(), history.clone(), last, stop.clone()));
        Ok(PgEvents { tx, writer, history, progress: ProgressGate::default(), stop })
    }

    pub fn event_id(&self, seq: u64) -> String {
        format!("c{seq}")
    }

    pub fn emit(&self, kind: Kind, rec: &UploadRecord) {
        if rec.asset.is_none() {
            return; // partial uploads are not assets
        }
        if kind != Kind::Progress {
            self.progress.forget(rec.id);
        }
        if self.writer.try_send((kind, rec.clone())).is_err() {
            // The database away for long: memory stays bounded, and
            // subscribers refetch (the list is the truth, events a hint).
            tracing::warn!(asset = %rec.id, "the event queue is full (database away?); an event is dropped");
        }
    }

    pub fn progress(&self, rec: &UploadRecord) {
        if self.progress.due(rec) {
            self.emit(Kind::Progress, rec);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events after `last_id`, from this node's copy of the newest ones.
    pub fn resume(&self, last_id: &str) -> Resume {
        let Some(seq) = last_id.trim().strip_prefix('c').and_then(|s| s.parse::<u64>().ok()) else {
            return Resume::Gap;
        };
        let history = self.history.lock().expect("history");
        match (history.events.front(), history.events.back()) {
            (Some((first, _)), _) if first.seq > seq + 1 => Resume::Gap,
            (_, Some((last, _))) if seq > last.seq + AHEAD => Resume::Gap,
            (_, Some((last, _))) if seq > last.seq => Resume::Ahead(seq),
            (None, _) if seq > 0 => Resume::Gap,
            _ => Resume::From(
                history.events.iter().filter(|(e, _)| e.seq > seq).map(|(e, _)| e.clone()).collect(),
            ),
        }
    }
}

/// Appends queued events in order, each batch in one transaction under the
/// append lock, then tells every node. Older events are pruned now and then.
async fn write(
    config: tokio_postgres::Config,
    mut client: tokio_postgres::Client,
    mut queue: mpsc::Receiver<(Kind, UploadRecord)>,
) {
    let mut appended = 0u64;
    // Prepared once per connection (made again after a reconnect).
    let mut insert: Option<tokio_postgres::Statement> = None;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = queue.try_recv() {
            batch.push(more);
        }
        // A connection that ended is made again (waiting for the database
        // to be back), and the batch then stored on it; a batch that fails
        // on a connection that then ends is tried once more.
        for attempt in 0..2 {
            while client.is_closed() {
                match config.connect(NoTls).await {
                    Ok((c, connection)) => {
                        tokio::spawn(connection);
                        client = c;
                        insert = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the event writer cannot reach the database; trying again");
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
            // The whole batch in one transaction of four round trips: the
            // append lock (commits in the order of their numbers), one
            // insert of every event in order, the notice, the commit.
            let kinds: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
            let projects: Vec<uuid::Uuid> = batch.iter().map(|(_, r)| r.project_id).collect();
            let records: Vec<Vec<u8>> = batch
                .iter()
                .map(|(_, r)| crate::backends::sled_meta::codec::encode(r).unwrap_or_default())
                .collect();
            let result = async {
                let statement = match &insert {
                    Some(s) => s.clone(),
                    None => {
                        let s = client
                            .prepare(
                                "INSERT INTO tusk_events (kind, project_id, record)
                                 SELECT kind, project_id, record
                                 FROM unnest($1::text[], $2::uuid[], $3::bytea[]) WITH ORDINALITY
                                      AS e(kind, project_id, record, n)
                                 ORDER BY n",
                            )
                            .await?;
                        insert = Some(s.clone());
                        s
                    }
                };
                client.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK})")).await?;
                client.execute(&statement, &[&kinds, &projects, &records]).await?;
                client.batch_execute(&format!("SELECT pg_notify('{CHANNEL}', ''); COMMIT")).await
            }
            .await;
            match result {
                Ok(()) => break,
                Err(_) if attempt == 0 && client.is_closed() => continue,
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    tracing::error!(error = %e, events = batch.len(), "asset events could not be stored; they are lost");
                    break;
                }
            }
        }
        appended += batch.len() as u64;
        if appended >= KEEP as u64 / 4 {
            appended = 0;
            let _ = client
                .execute(
                    "DELETE FROM tusk_events WHERE seq <= (SELECT max(seq) FROM tusk_events) - $1",
                    &[&KEEP],
                )
                .await;
        }
    }
}

/// An event row and the size of its stored record.
fn decode(row: &tokio_postgres::Row) -> Option<(Arc<Event>, usize)> {
    let seq: i64 = row.get(0);
    let kind = kind_of(row.get(1))?;
    let bytes: Vec<u8> = row.get(3);
    let record: UploadRecord = crate::backends::sled_meta::codec::decode(&bytes).ok()?;
    // In memory a record takes about twice its packed size (its metadata
    // as sent and as a map), and a fixed part.
    Some((Arc::new(Event { seq: seq as u64, kind, project: row.get(2), record }), 512 + 2 * bytes.len()))
}

fn remember(history: &Mutex<History>, ev: Arc<Event>, size: usize) {
    let mut h = history.lock().expect("history");
    h.bytes += size;
    h.events.push_back((ev, size));
    while h.events.len() > KEEP as usize || (h.bytes > KEEP_BYTES && h.events.len() > 1) {
        let (_, dropped) = h.events.pop_front().expect("not empty");
        h.bytes -= dropped;
    }
}

/// The newest stored events into `history`; returns the last number.
async fn load_newest(
    config: &tokio_postgres::Config,
    history: &Mutex<History>,
) -> Result<i64, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let conn = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT seq, kind, project_id, record FROM
               (SELECT * FROM tusk_events ORDER BY seq DESC LIMIT $1) newest ORDER BY seq",
            &[&KEEP],
        )
        .await?;
    let mut last = 0;
    for row in &rows {
        last = row.get(0);
        if let Some((ev, size)) = decode(row) {
            remember(history, ev, size);
        }
    }
    drop(client);
    let _ = conn.await;
    Ok(last)
}

/// Listens for new events and hands them on in order; reconnects when its
/// session ends.
async fn read(
    config: tokio_postgres::Config,
    tx: broadcast::Sender<Arc<Event>>,
    history: Arc<Mutex<History>>,
    mut last: i64,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        let (client, mut connection) = match config.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the event reader cannot reach the database; trying again");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let (heard, mut hear) = mpsc::unbounded_channel();
        let listening = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(_)) => {
                        let _ = heard.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let newer =
            match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                Ok(()) => client
                    .prepare(
                        // A limit, so that the plan kept for the statement
                        // walks the index from `last` rather than sorting
                        // the table.
                        "SELECT seq, kind, project_id, record FROM tusk_events WHERE seq > $1 ORDER BY seq \
                         LIMIT 1024",
                    )
                    .await,
                Err(e) => Err(e),
            };
        let Ok(newer) = newer else {
            listening.abort();
            tokio::time::sleep(POLL).await;
            continue;
        };
        loop {
            // What is new past `last`, heard of or not (a NOTIFY sent while
            // reconnecting is not heard).
            let rows = match client.query(&newer, &[&last]).await {
                Ok(rows) => rows,
                Err(_) => break,
            };
            for row in &rows {
                last = row.get(0);
                if let Some((ev, size)) = decode(row) {
                    remember(&history, ev.clone(), size);
                    let _ = tx.send(ev);
                }
            }
            if rows.len() == 1024 {
                continue; // more than one page is new
            }
            tokio::select! {
                h = hear.recv() => if h.is_none() { break },
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => break,
            }
            while hear.try_recv().is_ok() {}
        }
        listening.abort();
    }
}
