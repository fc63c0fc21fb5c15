//! Test helpers shared with the engine crates (feature `test-utils`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::change::{Change, OriginFilter, Version, Watermarks};
use crate::endpoint::{ApplyBatch, ApplyOutcome, BulkItem, BulkTarget, Endpoint, Held, ReadRequest};
use crate::error::{EndpointError, ErrorKind};
use crate::schema::{TableName, TableSchema};
use crate::state::SessionRecord;

/// Wraps an endpoint and fails the write after `k` successful batch writes
/// (applies and bulk loads), as a crash between two batches would. The failing
/// write is refused before it reaches the database, so it commits nothing.
pub struct FaultyEndpoint<E> {
    inner: E,
    /// Writes left before the failure; negative means never fail.
    remaining: Arc<AtomicI64>,
    /// Where `is_empty` stops, once it has looked, until the test resumes it.
    empty_check_pause: Option<Pause>,
}

/// A point where a wrapped endpoint stops and waits for the test: the test
/// waits until the endpoint gets there, acts (say, an application write that
/// races the sync), then lets it go on.
#[derive(Clone, Default)]
pub struct Pause {
    reached: Arc<Notify>,
    resumed: Arc<Notify>,
}

impl Pause {
    /// Waits until the endpoint has reached the pause.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the endpoint go on.
    pub fn resume(&self) {
        self.resumed.notify_one();
    }

    async fn stop_here(&self) {
        // `notify_one` keeps a permit when nobody waits yet, so neither side
        // can miss the other.
        self.reached.notify_one();
        self.resumed.notified().await;
    }
}

impl<E> FaultyEndpoint<E> {
    /// Fails the write after `k` successful ones.
    pub fn failing_after(inner: E, k: u64) -> Self {
        FaultyEndpoint { inner, remaining: Arc::new(AtomicI64::new(k as i64)), empty_check_pause: None }
    }

    /// Never fails, but stops after each emptiness check (with the answer
    /// already taken) until the returned pause is resumed: the window
    /// in which an application may write to a table the sync found empty.
    pub fn pausing_after_empty_check(inner: E) -> (Self, Pause) {
        let pause = Pause::default();
        let endpoint = FaultyEndpoint {
            inner,
            remaining: Arc::new(AtomicI64::new(i64::MAX)),
            empty_check_pause: Some(pause.clone()),
        };
        (endpoint, pause)
    }

    /// Whether the injected failure has happened.
    pub fn has_failed(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) < 0
    }

    fn check(&self) -> Result<(), EndpointError> {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) <= 0 {
            Err(EndpointError::new(ErrorKind::Injected, "injected failure"))
        } else {
            Ok(())
        }
    }
}

impl<E: Endpoint> Endpoint for FaultyEndpoint<E> {
    fn label(&self) -> &str {
        self.inner.label()
    }
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
    async fn list_tables(&self) -> Result<Vec<TableName>, EndpointError> {
        self.inner.list_tables().await
    }
    async fn introspect(&self, table: &TableName) -> Result<Option<TableSchema>, EndpointError> {
        self.inner.introspect(table).await
    }
    async fn create_table(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.inner.create_table(table).await
    }
    async fn provision(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.inner.provision(table).await
    }
    async fn provision_as_hub(&self, table: &TableSchema) -> Result<(), EndpointError> {
        self.inner.provision_as_hub(table).await
    }
    async fn is_provisioned(&self, table: &TableName) -> Result<bool, EndpointError> {
        self.inner.is_provisioned(table).await
    }
    async fn deprovision(&self, tables: &[TableName]) -> Result<Vec<String>, EndpointError> {
        self.inner.deprovision(tables).await
    }
    async fn snapshot_version(&self) -> Result<Version, EndpointError> {
        self.inner.snapshot_version().await
    }
    async fn watermarks(&self, scope: &str, peer: &str, table: &TableName) -> Result<Watermarks, EndpointError> {
        self.inner.watermarks(scope, peer, table).await
    }
    fn versions_are_per_transaction(&self) -> bool {
        self.inner.versions_are_per_transaction()
    }
    async fn read_changes(&self, request: ReadRequest<'_>) -> Result<Vec<Change>, EndpointError> {
        self.inner.read_changes(request).await
    }
    async fn apply_changes(&self, batch: ApplyBatch<'_>) -> Result<ApplyOutcome, EndpointError> {
        self.check()?;
        self.inner.apply_changes(batch).await
    }
    fn holds_applies(&self) -> bool {
        self.inner.holds_applies()
    }
    async fn apply_changes_held(&self, batch: ApplyBatch<'_>) -> Result<Held, EndpointError> {
        self.check()?;
        self.inner.apply_changes_held(batch).await
    }
    async fn count_changes(
        &self,
        table: &TableSchema,
        after: Watermarks,
        origin: &OriginFilter,
    ) -> Result<u64, EndpointError> {
        self.inner.count_changes(table, after, origin).await
    }
    async fn is_empty(&self, table: &TableName) -> Result<bool, EndpointError> {
        let empty = self.inner.is_empty(table).await;
        if let Some(pause) = &self.empty_check_pause {
            pause.stop_here().await;
        }
        empty
    }
    async fn bulk_read(
        &self,
        table: &TableSchema,
        batch_rows: usize,
        tx: mpsc::Sender<BulkItem>,
    ) -> Result<u64, EndpointError> {
        self.inner.bulk_read(table, batch_rows, tx).await
    }
    async fn bulk_load(&self, target: BulkTarget<'_>, rx: mpsc::Receiver<BulkItem>) -> Result<u64, EndpointError> {
        self.check()?;
        self.inner.bulk_load(target, rx).await
    }
    async fn compact(&self) -> Result<u64, EndpointError> {
        self.inner.compact().await
    }
    async fn record_session(&self, scope: &str, peer: &str, record: &SessionRecord) -> Result<(), EndpointError> {
        self.inner.record_session(scope, peer, record).await
    }
    async fn session_record(&self, scope: &str, peer: &str) -> Result<Option<SessionRecord>, EndpointError> {
        self.inner.session_record(scope, peer).await
    }
}
