//! A fake `Backend` whose batches wait for the test's go-ahead, so tests of
//! batching, admission, deadlines and shutdown put events in the order they
//! need by hand instead of sleeping and hoping the scheduler agrees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use fovea_core::Tensor;
use fovea_engine::{Backend, BackendError, BackendFactory, Signature};
use tokio::sync::mpsc;

/// The test's side of a set of [`GatedBackend`]s: arms them, sees each batch
/// start and lets it finish. Dropping it lets every batch through, so an
/// inference thread is never left waiting on a test that has ended.
pub struct Gate {
    shared: Arc<Shared>,
    started: mpsc::UnboundedReceiver<Batch>,
    item_shape: Vec<usize>,
    classes: usize,
}

/// A batch as the backend received it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The batch's input, `[n, ...item]`.
    pub input: Tensor,
    /// The name of the thread running it (the engine names its inference threads).
    pub thread: Option<String>,
}

impl Batch {
    /// Items in the batch.
    pub fn size(&self) -> usize {
        self.input.batch_size()
    }
}

/// A [`fovea_engine::Backend`] that reports each batch to its [`Gate`] and,
/// once the gate holds, waits for the test's release before answering
/// [`GatedBackend::logits`] of its input. Made by [`Gate::factory`].
pub struct GatedBackend {
    shared: Arc<Shared>,
    signature: Signature,
    classes: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    started: mpsc::UnboundedSender<Batch>,
    /// Backends made and not yet dropped.
    instances: AtomicUsize,
}

struct State {
    mode: Mode,
    /// Batches released ahead of starting, while holding.
    permits: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Until the test holds: batches run unreported. The engine warms every
    /// instance up before `Engine::start` returns, and those runs are none of
    /// the test's business; arming after start, rather than counting warm-up
    /// runs, keeps this fake independent of how the engine warms up.
    Warming,
    /// Every batch is reported and waits for a release.
    Holding,
    /// Every batch is reported and runs at once.
    Open,
}

impl Gate {
    /// A gate for backends taking items of `item_shape` and answering `classes` logits.
    pub fn new(item_shape: &[usize], classes: usize) -> Self {
        let (started, receiver) = mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    mode: Mode::Warming,
                    permits: 0,
                }),
                changed: Condvar::new(),
                started,
                instances: AtomicUsize::new(0),
            }),
            started: receiver,
            item_shape: item_shape.to_vec(),
            classes,
        }
    }

    /// Makes backends behind this gate, one per call (one per instance of a
    /// model version), for `ModelSource::Backend`.
    pub fn factory(&self) -> BackendFactory {
        let shared = self.shared.clone();
        let mut input_shape = vec![None];
        input_shape.extend(self.item_shape.iter().copied().map(Some));
        let signature = Signature {
            input_name: "input".into(),
            input_shape,
            output_name: "logits".into(),
            output_shape: vec![None, Some(self.classes)],
        };
        let classes = self.classes;
        BackendFactory::new(move || {
            shared.instances.fetch_add(1, Ordering::AcqRel);
            Ok(Box::new(GatedBackend {
                shared: shared.clone(),
                signature: signature.clone(),
                classes,
            }))
        })
    }

    /// From now on every batch is reported and waits for [`Gate::release`].
    /// Call it once the engine has started, that is after warm-up.
    pub fn hold(&self) {
        self.shared.set(|state| state.mode = Mode::Holding);
    }

    /// Lets one batch finish: one that waits, or else the next one to start.
    pub fn release(&self) {
        self.shared.set(|state| state.permits += 1);
    }

    /// Lets every batch, waiting or to come, run at once (still reported).
    pub fn open(&self) {
        self.shared.set(|state| state.mode = Mode::Open);
    }

    /// Waits for the next batch to start and returns it. Batches are
    /// reported in the order they reach the backend, before they wait.
    pub async fn started(&mut self) -> Batch {
        self.started
            .recv()
            .await
            .expect("the gate holds a sender itself, so the channel never closes")
    }

    /// Backends made by the factory and not yet dropped: the engine drops
    /// an instance's backend when that instance stops.
    pub fn instances(&self) -> usize {
        self.shared.instances.load(Ordering::Acquire)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// Reports `input` and waits until the gate lets it through.
    fn pass(&self, input: &Tensor) {
        let mut state = self.lock();
        if state.mode == Mode::Warming {
            return;
        }
        // A test that has ended no longer listens; the batch still runs.
        let _ = self.started.send(Batch {
            input: input.clone(),
            thread: std::thread::current().name().map(str::to_owned),
        });
        while state.mode == Mode::Holding && state.permits == 0 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.mode == Mode::Holding {
            state.permits -= 1;
        }
    }
}

impl GatedBackend {
    /// What the backend answers for `input`: each row's logits are its mean
    /// plus the class index, so every row's answer depends on that row alone
    /// and a row handed to the wrong caller is seen.
    pub fn logits(input: &Tensor, classes: usize) -> Tensor {
        let rows = input.batch_size();
        let mut data = Vec::with_capacity(rows * classes);
        for row in 0..rows {
            let values = input.item(row).unwrap_or_default();
            let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
            data.extend((0..classes).map(|class| mean + class as f32));
        }
        Tensor::new(vec![rows, classes], data).expect("rows × classes values")
    }
}

impl Backend for GatedBackend {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn run(&mut self, input: &Tensor) -> Result<Tensor, BackendError> {
        self.shared.pass(input);
        Ok(Self::logits(input, self.classes))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl Drop for GatedBackend {
    fn drop(&mut self) {
        self.shared.instances.fetch_sub(1, Ordering::AcqRel);
    }
}
