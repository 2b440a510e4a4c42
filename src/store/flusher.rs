//! Group commit for sled.
//!
//! Every acknowledgement (201, 204) waits for a sled flush that started after
//! its write. Flushes run on one dedicated thread: a caller takes a ticket,
//! and the next flush covers every ticket taken before it started, so many
//! concurrent requests share one log sync. (sled 0.34's own `flush_async`
//! can deadlock its I/O pool when many callers flush at once: sled#1308.)

use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

/// How long a flush with few waiters waits for more, and what "few" is.
const LINGER: std::time::Duration = std::time::Duration::from_micros(200);
const LINGER_BELOW: u64 = 4;

#[derive(Default)]
struct State {
    /// Tickets handed out.
    requested: u64,
    /// Every ticket up to this one is durable (or failed with `error`).
    done: u64,
    error: Option<String>,
    stop: bool,
}

pub struct Flusher {
    state: Arc<(Mutex<State>, Condvar)>,
    done_rx: watch::Receiver<u64>,
}

impl Flusher {
    pub fn start(db: sled::Db) -> Flusher {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let (done_tx, done_rx) = watch::channel(0u64);
        let shared = state.clone();
        std::thread::Builder::new()
            .name("tusk-flush".into())
            .spawn(move || run(db, shared, done_tx))
            .expect("spawning the flush thread");
        Flusher { state, done_rx }
    }

    fn ticket(&self) -> u64 {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().expect("flush state");
        s.requested += 1;
        cv.notify_all();
        s.requested
    }

    fn outcome(&self) -> Result<(), String> {
        match &self.state.0.lock().expect("flush state").error {
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
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().expect("flush state");
        while s.done < ticket && !s.stop {
            s = cv.wait(s).expect("flush state");
        }
        match &s.error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        lock.lock().expect("flush state").stop = true;
        cv.notify_all();
    }
}

fn run(db: sled::Db, state: Arc<(Mutex<State>, Condvar)>, done_tx: watch::Sender<u64>) {
    let (lock, cv) = &*state;
    let mut last_batch = 0;
    loop {
        let (target, batch) = {
            let mut s = lock.lock().expect("flush state");
            while s.requested == s.done && !s.stop {
                s = cv.wait(s).expect("flush state");
            }
            if s.requested == s.done {
                return; // stopping, nothing pending
            }
            // Under concurrent load (the last flush served several), a lone
            // waiter is often the first of a burst: the clients answered by
            // the last flush send their next request right away. Give the
            // rest a moment to join this flush rather than the next. A single
            // client (a run of PATCHes) never waits.
            if last_batch > 1 && s.requested - s.done < LINGER_BELOW && !s.stop {
                s = cv.wait_timeout(s, LINGER).expect("flush state").0;
            }
            (s.requested, s.requested - s.done)
        };
        last_batch = batch;
        let result = db.flush();
        {
            let mut s = lock.lock().expect("flush state");
            s.done = target;
            s.error = result.err().map(|e| e.to_string());
        }
        cv.notify_all();
        let _ = done_tx.send(target);
    }
}
