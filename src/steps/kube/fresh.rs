//! Fresh lists shared by concurrent steps. A safety check (no pod mounts the claim about
//! to be deleted) must read state newer than the moment it asked, but it need not read it
//! alone: a list that *began* after the check asked is as fresh as the check needs. So
//! checks that arrive while a list of the same kind and namespace is in flight share the
//! next one; at most one list is in flight and one queued. A fleet of deletions
//! re-checking the namespace's pods then makes a handful of lists instead of one each (one
//! each was quadratic: N claims times N pods, in requests, CPU and memory).
//!
//! A cache (the run's shared watch) would save the lists too, but it cannot prove it is
//! current when nothing in the namespace changed since the check asked; a list can.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kube::api::{Api, ListParams};

use super::watches::{WatchKey, Watched};

/// The run's shared lists, by cluster, kind and namespace.
#[derive(Default)]
pub struct FreshLists {
    lists: Mutex<HashMap<WatchKey, Arc<dyn Any + Send + Sync>>>,
}

impl FreshLists {
    /// Every object of `api`'s kind and namespace, listed no earlier than this call.
    pub async fn list<K: Watched>(&self, cluster: &str, api: &Api<K>) -> Result<Arc<Vec<K>>, kube::Error> {
        let shared = self.shared::<K>(cluster, api);
        shared.read(|| async { Ok(api.list(&ListParams::default()).await?.items) }).await
    }

    fn shared<K: Watched>(&self, cluster: &str, api: &Api<K>) -> Arc<Coalesced<Vec<K>>> {
        let key = (cluster.to_string(), TypeId::of::<K>(), api.resource_url().to_string());
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let entry = lists.entry(key).or_insert_with(|| Arc::new(Coalesced::<Vec<K>>::default()));
        entry.clone().downcast::<Coalesced<Vec<K>>>().expect("keyed by the type it holds")
    }
}

/// One read shared by the readers that arrived before it began.
struct Coalesced<T> {
    /// Readers so far, numbered in the order they arrived.
    arrivals: AtomicU64,
    /// The last read completed: how many readers had arrived when it began, and what it
    /// returned. Held across a read, so reads never overlap.
    last: tokio::sync::Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced { arrivals: AtomicU64::new(0), last: tokio::sync::Mutex::new(None) }
    }
}

impl<T> Coalesced<T> {
    /// What a read begun after this call returns: the last read's result if it began after
    /// this reader arrived, else a new read's. Failed reads are not shared: the next reader
    /// reads again.
    async fn read<E, F, Fut>(&self, read: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let arrived = self.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        // tokio's Mutex is fair: readers are served in the order they queued.
        let mut last = self.last.lock().await;
        if let Some((covers, value)) = last.as_ref()
            && *covers >= arrived
        {
            return Ok(value.clone());
        }
        // Every reader counted by now arrived before the read below begins.
        let covers = self.arrivals.load(Ordering::SeqCst);
        let value = Arc::new(read().await?);
        *last = Some((covers, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A read that counts itself and returns its own number once `go` is notified.
    async fn numbered_read(reads: &AtomicUsize, go: &tokio::sync::Notify) -> Result<usize, ()> {
        let number = reads.fetch_add(1, Ordering::SeqCst) + 1;
        go.notified().await;
        Ok(number)
    }

    #[tokio::test]
    async fn readers_arriving_during_a_read_share_the_next_one_not_the_one_in_flight() {
        let shared = Arc::new(Coalesced::<usize>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(tokio::sync::Notify::new());
        let spawn_reader = || {
            let (shared, reads, go) = (shared.clone(), reads.clone(), go.clone());
            tokio::spawn(async move { shared.read(|| numbered_read(&reads, &go)).await })
        };
        let first = spawn_reader();
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The first read is in flight: these ten arrived after it began.
        let later: Vec<_> = (0..10).map(|_| spawn_reader()).collect();
        while shared.arrivals.load(Ordering::SeqCst) < 11 {
            tokio::task::yield_now().await;
        }
        go.notify_one();
        assert_eq!(*first.await.unwrap().unwrap(), 1);
        while reads.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        go.notify_one();
        for reader in later {
            assert_eq!(*reader.await.unwrap().unwrap(), 2, "a read begun after the reader arrived");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "ten readers shared one read");
    }

    #[tokio::test]
    async fn a_reader_arriving_after_a_read_completed_reads_again() {
        let shared = Coalesced::<usize>::default();
        let reads = AtomicUsize::new(0);
        let go = tokio::sync::Notify::new();
        go.notify_one();
        assert_eq!(*shared.read(|| numbered_read(&reads, &go)).await.unwrap(), 1);
        go.notify_one();
        assert_eq!(*shared.read(|| numbered_read(&reads, &go)).await.unwrap(), 2, "never the stale result");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_shared_with_the_next_reader() {
        let shared = Coalesced::<usize>::default();
        assert_eq!(shared.read(|| async { Err::<usize, &str>("refused") }).await.unwrap_err(), "refused");
        assert_eq!(*shared.read(|| async { Ok::<usize, &str>(7) }).await.unwrap(), 7);
    }
}
