//! Group commit for sled.
//!
//! Every acknowledgement (201, 204) waits for a sled flush that started after
//! its write. Flushes run on one dedicated thread: a caller takes a ticket,
//! and the next flush covers every ticket taken before it started, so many
//! concurrent requests share one log sync. (sled 0.34's own `flush_async`
//! can deadlock its I/O pool when many callers flush at once: sled#1308.)

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a flush with few waiters waits for more, and what "few" is.
const LINGER: Duration = Duration::from_micros(200);
const LINGER_BELOW: u64 = 4;

#[derive(Default)]
struct State {
    /// Tickets handed out.
    requested: u64,
    /// Every ticket up to this one is durable (or failed with `error`).
    done: u64,
    error: Option<String>,
    stop: bool,
    /// The flush thread waits for a ticket (`Idle`) or for more (`Lingering`):
    /// only then does a new ticket wake it, saving a futex call per request
    /// while a flush runs.
    flusher: Waiting,
    /// Threads in `flush_blocking`.
    blocked: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    #[default]
    No,
    Idle,
    Lingering,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flush thread.
    work: Condvar,
    /// Wakes `flush_blocking` callers after each flush.
    flushed: Condvar,
}

pub struct Flusher {
    shared: Arc<Shared>,
    done_rx: watch::Receiver<u64>,
    /// Joined on drop: the thread holds a handle of the database, which
    /// stays locked until the last one goes.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub fn start(db: sled::Db) -> Flusher {
        let shared =
            Arc::new(Shared { state: Mutex::default(), work: Condvar::new(), flushed: Condvar::new() });
        let (done_tx, done_rx) = watch::channel(0u64);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tusk-flush".into())
            .spawn(move || run(db, &thread_shared, done_tx))
            .expect("spawning the flush thread");
        Flusher { shared, done_rx, thread: Some(thread) }
    }

    fn ticket(&self) -> u64 {
        let mut s = self.shared.state.lock().expect("flush state");
        s.requested += 1;
        let wake = match s.flusher {
            Waiting::No => false,
            Waiting::Idle => true,
            Waiting::Lingering => s.requested - s.done >= LINGER_BELOW,
        };
        if wake {
            self.shared.work.notify_one();
        }
        s.requested
    }

    fn outcome(&self) -> Result<(), String> {
        match &self.shared.state.lock().expect("flush state").error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }

    pub async fn flush(&self) -> Result<(), String> {
        let ticket = self.ticket();
        let mut rx = self.done_rx.clone();
        rx.wait_for(|done| *done >= ticket).await.map_err(|_| "flush thread stopped".to_string())?;
        self.outcome()
    }

    pub fn flush_blocking(&self) -> Result<(), String> {
        let ticket = self.ticket();
        let mut s = self.shared.state.lock().expect("flush state");
        s.blocked += 1;
        while s.done < ticket && !s.stop {
            s = self.shared.flushed.wait(s).expect("flush state");
        }
        s.blocked -= 1;
        match &s.error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.state.lock().expect("flush state").stop = true;
        self.shared.work.notify_one();
        self.shared.flushed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: sled::Db, shared: &Shared, done_tx: watch::Sender<u64>) {
    let mut last_batch = 0;
    loop {
        let (target, batch) = {
            let mut s = shared.state.lock().expect("flush state");
            s.flusher = Waiting::Idle;
            while s.requested == s.done && !s.stop {
                s = shared.work.wait(s).expect("flush state");
            }
            if s.requested == s.done {
                return; // stopping, nothing pending
            }
            // Under concurrent load (the last flush served several), a lone
            // waiter is often the first of a burst: the clients answered by
            // the last flush send their next request right away. Give the
            // rest a moment to join this flush rather than the next. A single
            // client (a run of PATCHes) never waits.
            if last_batch > 1 && s.requested - s.done < LINGER_BELOW {
                s.flusher = Waiting::Lingering;
                let deadline = Instant::now() + LINGER;
                while s.requested - s.done < LINGER_BELOW && !s.stop {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
                    s = shared.work.wait_timeout(s, left).expect("flush state").0;
                }
            }
            s.flusher = Waiting::No;
            (s.requested, s.requested - s.done)
        };
        last_batch = batch;
        let result = db.flush();
        let blocked = {
            let mut s = shared.state.lock().expect("flush state");
            s.done = target;
            s.error = result.err().map(|e| e.to_string());
            s.blocked
        };
        if blocked > 0 {
            shared.flushed.notify_all();
        }
        let _ = done_tx.send(target);
    }
}
