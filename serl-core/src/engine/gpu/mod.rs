//! The wgpu backend: the kernel list in WGSL on any GPU wgpu drives
//! (Vulkan, Metal, DX12), software Vulkan (Mesa's lavapipe) included.
//!
//! Buffers live on the device for as long as the driver keeps them
//! (weights, gradients, moments, activations, KV caches). Kernels are
//! recorded into one command encoder and submitted together when the host
//! needs a result ([`Backend::read`], [`Backend::sync`]) or after
//! [`FLUSH_EVERY`] launches; pipelines are compiled once per kernel and
//! cached. A validation error inside a kernel launch is kept and returned by
//! the next `read`/`sync`, since the kernel methods themselves return
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::kernels::{AttnDims, GradFn};
use super::{Backend, EngineError, MmDims, Span};

/// Launches recorded before the encoder is submitted without waiting.
const FLUSH_EVERY: usize = 256;
/// Bytes between two launches' parameter blocks in the shared uniform
/// buffer: WebGPU's largest uniform offset alignment, so any adapter takes it.
const PARAM_STRIDE: usize = 256;
/// Bytes of one launch's parameters (16 scalars).
const PARAM_BYTES: usize = 64;
/// Positions per chunk of the fused output tail (its `[chunk, vocab]`
/// logits are the largest scratch buffer).
const TAIL_CHUNK: usize = 256;
/// The attention kernels keep one query's accumulator in registers.
const MAX_HEAD_DIM: usize = 256;

const PRELUDE: &str = include_str!("prelude.wgsl");

/// Every kernel: its name and WGSL source (the prelude is prepended).
const KERNELS: &[(&str, &str)] = &[
    ("add", include_str!("add.wgsl")),
    ("scale", include_str!("scale.wgsl")),
    ("swiglu", include_str!("swiglu.wgsl")),
    ("swiglu_bwd", include_str!("swiglu_bwd.wgsl")),
    ("adamw", include_str!("adamw.wgsl")),
    ("embedding", include_str!("embedding.wgsl")),
    ("embedding_bwd", include_str!("embedding_bwd.wgsl")),
    ("rmsnorm", include_str!("rmsnorm.wgsl")),
    ("rmsnorm_dx", include_str!("rmsnorm_dx.wgsl")),
    ("rmsnorm_dw", include_str!("rmsnorm_dw.wgsl")),
    ("rope", include_str!("rope.wgsl")),
    ("gemm", include_str!("gemm.wgsl")),
    ("colsum", include_str!("colsum.wgsl")),
    ("sq_sum", include_str!("sq_sum.wgsl")),
    ("attention", include_str!("attention.wgsl")),
    ("attention_cached", include_str!("attention_cached.wgsl")),
    ("attention_delta", include_str!("attention_delta.wgsl")),
    ("attention_dq", include_str!("attention_dq.wgsl")),
    ("attention_dkv", include_str!("attention_dkv.wgsl")),
    ("gather_rows", include_str!("gather_rows.wgsl")),
    ("scatter_add_rows", include_str!("scatter_add_rows.wgsl")),
    ("log_softmax", include_str!("log_softmax.wgsl")),
    ("dlogits", include_str!("dlogits.wgsl")),
    ("row_argmax", include_str!("row_argmax.wgsl")),
];

/// A device buffer of `f32` (its length in elements; the allocation is at
/// least one element, as wgpu refuses empty bindings).
#[derive(Debug)]
pub struct GpuBuf {
    buf: wgpu::Buffer,
    len: usize,
}

impl GpuBuf {
    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A buffer mapping in flight: its outcome once wgpu calls back, and the
/// task to wake then.
#[derive(Default)]
struct Mapping {
    result: Option<Result<(), String>>,
    waker: Option<std::task::Waker>,
}

/// Waits for a [`Mapping`] to complete.
struct MapWait(Arc<Mutex<Mapping>>);

impl std::future::Future for MapWait {
    type Output = Result<(), String>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut m = lock(&self.0);
        match m.result.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                m.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// A device buffer of `u32` ids.
#[derive(Debug)]
pub struct GpuIds(GpuBuf);

/// What a kernel binds: a buffer, whole or a byte range of it. Parameter
/// spans are bound as ranges, so no binding exceeds the adapter's
/// `max_storage_buffer_binding_size` however large the model (lavapipe
/// allows 128 MiB; SmolLM2's weights are 540 MB).
#[derive(Clone, Copy)]
struct Bind<'a> {
    buf: &'a wgpu::Buffer,
    off: u64,
    size: Option<wgpu::BufferSize>,
}

impl GpuBuf {
    fn all(&self) -> Bind<'_> {
        Bind {
            buf: &self.buf,
            off: 0,
            size: None,
        }
    }
}

impl GpuIds {
    fn all(&self) -> Bind<'_> {
        self.0.all()
    }
}

/// Working memory of the fused output tail on the device.
#[derive(Debug)]
pub struct GpuTailScratch {
    logits: GpuBuf,
    h: GpuBuf,
    dh: GpuBuf,
    dlp: GpuBuf,
    chunk: usize,
}

/// One adapter as `serl devices` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Its index for `wgpu:N`.
    pub index: usize,
    /// The adapter's name (`llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The API wgpu drives it through (`Vulkan`, `Metal`, `Dx12`).
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// The largest buffer it allows, in bytes.
    pub max_buffer_size: u64,
    /// The largest storage binding, in bytes.
    pub max_storage_binding: u64,
}

/// An encoder being recorded: its commands, how many there are, and the
/// parameter blocks of its launches.
struct Pending {
    enc: wgpu::CommandEncoder,
    records: usize,
    params: Vec<u8>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    limits: wgpu::Limits,
    /// Largest binding in elements (a multiple of `align`).
    max_bind: usize,
    /// Binding offsets' alignment in elements.
    align: usize,
    pipes: Mutex<HashMap<&'static str, wgpu::ComputePipeline>>,
    pending: Mutex<Option<Pending>>,
    /// The parameter blocks of one encoder's launches, slot by slot
    /// (written once, just before the encoder is submitted).
    params: wgpu::Buffer,
    error: Arc<Mutex<Option<String>>>,
}

/// The wgpu backend: one adapter's device and queue, shared by clones.
#[derive(Clone)]
pub struct Wgpu(Arc<Inner>);

impl std::fmt::Debug for Wgpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wgpu({})", self.0.name)
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // Vulkan validation layers only when asked for (WGPU_VALIDATION=1).
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    wgpu::Instance::new(desc)
}

#[cfg(not(target_arch = "wasm32"))]
fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let lim = a.limits();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        max_buffer_size: lim.max_buffer_size,
        max_storage_binding: lim.max_storage_buffer_binding_size,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Workgroups for `items` items at `per` items a group, spread over x and
/// y so that neither exceeds 65,535.
fn groups(items: usize, per: usize) -> (u32, u32) {
    let g = items.div_ceil(per).max(1);
    let x = g.min(65_535);
    (x as u32, g.div_ceil(x) as u32)
}

fn u(x: usize) -> u32 {
    x as u32
}

fn f(x: f64) -> u32 {
    (x as f32).to_bits()
}

impl Wgpu {
    /// The adapters this machine offers, in `wgpu:N` order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn adapters() -> Vec<AdapterSummary> {
        let inst = instance();
        pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .enumerate()
            .map(|(i, a)| summary(i, a))
            .collect()
    }

    /// A device on adapter `index` (see [`Wgpu::adapters`]), or with `None`
    /// the first high-performance adapter.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(index: Option<usize>) -> Result<Wgpu, EngineError> {
        Wgpu::with_max_binding(index, None)
    }

    /// [`Wgpu::new`] with storage bindings capped at `max_binding` bytes
    /// (or the adapter's limit if smaller): tests use it to run large-model
    /// paths (ranges, chunked optimizer kernels) on small models.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_max_binding(
        index: Option<usize>,
        max_binding: Option<u64>,
    ) -> Result<Wgpu, EngineError> {
        pollster::block_on(Wgpu::open(index, max_binding))
    }

    /// [`Wgpu::new`] without blocking: the only way in a browser, where the
    /// adapter and device arrive once control returns to the page.
    pub async fn new_async(index: Option<usize>) -> Result<Wgpu, EngineError> {
        Wgpu::open(index, None).await
    }

    async fn open(index: Option<usize>, max_binding: Option<u64>) -> Result<Wgpu, EngineError> {
        let inst = instance();
        let adapter = match index {
            Some(i) => {
                let mut all = inst.enumerate_adapters(wgpu::Backends::all()).await;
                let n = all.len();
                if i >= n {
                    return Err(EngineError::Device(format!(
                        "wgpu:{i}: there are {n} adapters (see `serl devices`)"
                    )));
                }
                all.swap_remove(i)
            }
            None => inst
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    EngineError::Device(format!(
                        "wgpu: no adapter ({e}); on Linux without a GPU install \
                         Mesa's lavapipe (apt install mesa-vulkan-drivers); in a \
                         browser, one with WebGPU enabled"
                    ))
                })?,
        };
        let info = adapter.get_info();
        // Browsers keep adapter names to themselves (fingerprinting).
        let name = if info.name.is_empty() {
            format!("{:?} adapter", info.backend)
        } else {
            info.name
        };
        let mut limits = adapter.limits();
        if let Some(cap) = max_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let align = (limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let max_bind = (limits.max_storage_buffer_binding_size as usize / 4) / align * align;
        if max_bind < 64 * 1024 / 4 {
            return Err(EngineError::Device(format!(
                "wgpu: adapter {name} binds at most {} bytes of storage; the kernels need 64 KiB",
                limits.max_storage_buffer_binding_size
            )));
        }
        if (limits.max_storage_buffers_per_shader_stage as usize) < 8 {
            return Err(EngineError::Device(format!(
                "wgpu: adapter {name} allows {} storage buffers per shader stage; the kernels need 8",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("libserl"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::Device(format!("wgpu: adapter {name}: {e}")))?;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("libserl launch parameters"),
            size: (FLUSH_EVERY * PARAM_STRIDE) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = Arc::clone(&error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).get_or_insert_with(|| e.to_string());
        }));
        Ok(Wgpu(Arc::new(Inner {
            device,
            queue,
            name,
            limits,
            max_bind,
            align,
            pipes: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
            params,
            error,
        })))
    }

    /// The device for adapter `index` shared by this process (created on
    /// first use): the learner, the reference and the sampler then use one
    /// device and one pipeline cache.
    #[cfg(target_arch = "wasm32")]
    pub fn shared(_index: Option<usize>) -> Result<Wgpu, EngineError> {
        Err(EngineError::Device(
            "wgpu in a browser: open the device with Wgpu::new_async".into(),
        ))
    }

    /// The device for adapter `index` shared by this process (created on
    /// first use): the learner, the reference and the sampler then use one
    /// device and one pipeline cache.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shared(index: Option<usize>) -> Result<Wgpu, EngineError> {
        static DEVICES: Mutex<Vec<(Option<usize>, Wgpu)>> = Mutex::new(Vec::new());
        let mut all = lock(&DEVICES);
        if let Some((_, w)) = all.iter().find(|(i, _)| *i == index) {
            return Ok(w.clone());
        }
        let w = Wgpu::new(index)?;
        all.push((index, w.clone()));
        Ok(w)
    }

    /// The adapter's name.
    pub fn adapter_name(&self) -> &str {
        &self.0.name
    }

    fn take_error(&self) -> Result<(), EngineError> {
        match lock(&self.0.error).take() {
            Some(e) => Err(EngineError::Device(format!("wgpu ({}): {e}", self.0.name))),
            None => Ok(()),
        }
    }

    /// Elements `off..off + len` of `b` as a binding, and where `off` falls
    /// inside it (binding offsets must be aligned).
    fn range<'a>(&self, b: &'a GpuBuf, off: usize, len: usize) -> (Bind<'a>, u32) {
        let start = off / self.0.align * self.0.align;
        let end = (off + len).clamp(start + 1, b.len.max(1));
        let bind = Bind {
            buf: &b.buf,
            off: (start * 4) as u64,
            size: wgpu::BufferSize::new(((end - start) * 4) as u64),
        };
        (bind, u(off - start))
    }

    /// Splits `0..len` into pieces that fit one binding.
    fn pieces(&self, len: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let step = self.0.max_bind;
        (0..len.div_ceil(step)).map(move |i| (i * step, step.min(len - i * step)))
    }

    fn buffer(&self, len: usize) -> Result<GpuBuf, EngineError> {
        let bytes = (len.max(1) * 4) as u64;
        let lim = &self.0.limits;
        if bytes > lim.max_buffer_size {
            return Err(EngineError::Device(format!(
                "wgpu: a buffer of {len} floats ({bytes} bytes) exceeds adapter {}'s \
                 max_buffer_size ({})",
                self.0.name, lim.max_buffer_size
            )));
        }
        let buf = self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuBuf { buf, len })
    }

    fn buffer_with(&self, data: &[u8], len: usize) -> Result<GpuBuf, EngineError> {
        if data.is_empty() {
            return self.buffer(0);
        }
        let out = self.buffer(len)?;
        self.0.queue.write_buffer(&out.buf, 0, data);
        Ok(out)
    }

    fn pipeline(&self, name: &'static str) -> wgpu::ComputePipeline {
        let mut pipes = lock(&self.0.pipes);
        if let Some(p) = pipes.get(name) {
            return p.clone();
        }
        let src = KERNELS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        let module = self
            .0
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(format!("{PRELUDE}\n{src}").into()),
            });
        let p = self
            .0
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        pipes.insert(name, p.clone());
        p
    }

    /// Records one launch of kernel `name` with parameters `params` and
    /// buffers bound at 1, 2, … in order.
    fn launch(&self, name: &'static str, params: &[u32], bufs: &[Bind<'_>], grid: (u32, u32)) {
        let pipe = self.pipeline(name);
        let mut p = [0u32; PARAM_BYTES / 4];
        p[..params.len()].copy_from_slice(params);
        let dev = &self.0.device;
        let mut pending = lock(&self.0.pending);
        let pend = self.pending(&mut pending);
        // This launch's block of the shared uniform buffer: one upload per
        // submission instead of a buffer per launch.
        let slot = pend.params.len() / PARAM_STRIDE;
        pend.params.extend_from_slice(bytemuck::cast_slice(&p));
        pend.params.resize((slot + 1) * PARAM_STRIDE, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.0.params,
                offset: (slot * PARAM_STRIDE) as u64,
                size: wgpu::BufferSize::new(PARAM_BYTES as u64),
            }),
        }];
        for (i, b) in bufs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buf,
                    offset: b.off,
                    size: b.size,
                }),
            });
        }
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        });
        {
            let mut pass = pend
                .enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(grid.0, grid.1, 1);
        }
        self.recorded(&mut pending);
    }

    /// The encoder being recorded, started if there is none.
    fn pending<'a>(&self, slot: &'a mut Option<Pending>) -> &'a mut Pending {
        slot.get_or_insert_with(|| Pending {
            enc: self
                .0
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default()),
            records: 0,
            params: Vec::new(),
        })
    }

    /// Counts one recorded command; submits the encoder after
    /// [`FLUSH_EVERY`] (so the parameter slots never run out).
    fn recorded(&self, pending: &mut Option<Pending>) {
        if let Some(p) = pending.as_mut() {
            p.records += 1;
            if p.records >= FLUSH_EVERY {
                self.submit(pending.take());
            }
        }
    }

    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = lock(&self.0.pending);
        f(&mut self.pending(&mut pending).enc);
        self.recorded(&mut pending);
    }

    /// Uploads an encoder's launch parameters, then submits it (the upload
    /// lands before its commands run, after those of earlier submissions).
    fn submit(&self, pending: Option<Pending>) {
        if let Some(p) = pending {
            if !p.params.is_empty() {
                self.0.queue.write_buffer(&self.0.params, 0, &p.params);
            }
            self.0.queue.submit([p.enc.finish()]);
        }
    }

    fn flush(&self) {
        // Submitted under the lock: threads sharing the device (the shared
        // adapter of a process) then submit encoders in recording order,
        // and an encoder's parameter upload cannot land before another's
        // commands have read theirs.
        let mut pending = lock(&self.0.pending);
        self.submit(pending.take());
    }

    fn copy_bytes(&self, src: &wgpu::Buffer, from: usize, dst: &wgpu::Buffer, to: usize, n: usize) {
        if n > 0 {
            self.record(|enc| {
                enc.copy_buffer_to_buffer(
                    src,
                    (from * 4) as u64,
                    dst,
                    (to * 4) as u64,
                    (n * 4) as u64,
                )
            });
        }
    }

    /// Waits for a read-back where the thread may block. Natively the
    /// mapping completes inside the read's poll, so the future is ready
    /// when first polled; a browser maps buffers only once control returns
    /// to the page, so there blocking reads are an error.
    fn blocking<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        if cfg!(target_arch = "wasm32") {
            return Err(EngineError::Device(
                "wgpu on WebGPU reads results back asynchronously only (Backend::read_async)"
                    .into(),
            ));
        }
        pollster::block_on(read)
    }

    /// Copies `len` elements from `off` of `buf` to the host, waiting for
    /// the mapping without blocking.
    async fn read_raw_async(
        &self,
        buf: &wgpu::Buffer,
        off: usize,
        len: usize,
    ) -> Result<Vec<u8>, EngineError> {
        if len == 0 {
            self.flush();
            #[cfg(not(target_arch = "wasm32"))]
            self.wait()?;
            self.take_error()?;
            return Ok(Vec::new());
        }
        let staging = self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy_bytes(buf, off, &staging, 0, len);
        self.flush();
        let slot = Arc::new(Mutex::new(Mapping::default()));
        let done = Arc::clone(&slot);
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let mut m = lock(&done);
            m.result = Some(r.map_err(|e| e.to_string()));
            if let Some(w) = m.waker.take() {
                w.wake();
            }
        });
        // Natively the callback runs inside a poll; in a browser, when the
        // page's event loop gets to it.
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        MapWait(slot)
            .await
            .map_err(|e| EngineError::Device(format!("wgpu: readback: {e}")))?;
        self.take_error()?;
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| EngineError::Device(format!("wgpu: readback: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    fn wait(&self) -> Result<(), EngineError> {
        self.0
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| EngineError::Device(format!("wgpu: {e}")))?;
        self.take_error()
    }

    /// Reads an id buffer back (tests).
    pub fn read_ids(&self, ids: &GpuIds, n: usize) -> Result<Vec<u32>, EngineError> {
        let n = n.min(ids.0.len);
        let bytes = self.blocking(self.read_raw_async(&ids.0.buf, 0, n))?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// `C = A·B` (see gemm.wgsl) with operands given as (buffer, element
    /// offset, row stride, column stride); each is bound as the range it
    /// touches.
    fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: (&GpuBuf, usize, usize, usize),
        b: (&GpuBuf, usize, usize, usize),
        c: (&GpuBuf, usize, usize),
        bias: Option<(&GpuBuf, usize)>,
        acc: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        let k1 = k.max(1) - 1;
        let (ab, a_off) = self.range(a.0, a.1, (m - 1) * a.2 + k1 * a.3 + 1);
        let (bb, b_off) = self.range(b.0, b.1, k1 * b.2 + (n - 1) * b.3 + 1);
        let (cb, c_off) = self.range(c.0, c.1, (m - 1) * c.2 + n);
        let flags = u32::from(acc) | if bias.is_some() { 2 } else { 0 };
        let (biasb, bias_off) = match bias {
            Some((buf, off)) => self.range(buf, off, n),
            None => (bb, 0),
        };
        let params = [
            u(m),
            u(n),
            u(k),
            a_off,
            u(a.2),
            u(a.3),
            b_off,
            u(b.2),
            u(b.3),
            c_off,
            u(c.2),
            flags,
            bias_off,
            f(1.0),
        ];
        self.launch(
            "gemm",
            &params,
            &[ab, bb, biasb, cb],
            (n.div_ceil(64) as u32, m.div_ceil(64) as u32),
        );
    }

    fn attn_params(&self, d: AttnDims) -> Vec<u32> {
        vec![
            u(d.b),
            u(d.t),
            u(d.nh),
            u(d.nkv),
            u(d.hd),
            f(1.0 / (d.hd as f64).sqrt()),
        ]
    }
}

/// Checks an attention shape the kernels can run (they assert nothing).
fn attn_ok(d: AttnDims) -> bool {
    d.nkv > 0 && d.nh.is_multiple_of(d.nkv) && d.hd <= MAX_HEAD_DIM
}

impl Backend for Wgpu {
    type Buf = GpuBuf;
    type Ids = GpuIds;
    type TailScratch = GpuTailScratch;

    fn name(&self) -> String {
        format!("wgpu ({})", self.0.name)
    }

    fn zeros(&self, len: usize) -> Result<GpuBuf, EngineError> {
        // New buffers are zero-initialised by wgpu.
        self.buffer(len)
    }

    fn upload(&self, data: &[f32]) -> Result<GpuBuf, EngineError> {
        self.buffer_with(bytemuck::cast_slice(data), data.len())
    }

    fn upload_ids(&self, ids: &[u32]) -> Result<GpuIds, EngineError> {
        Ok(GpuIds(
            self.buffer_with(bytemuck::cast_slice(ids), ids.len())?,
        ))
    }

    fn read(&self, buf: &GpuBuf, span: Span) -> Result<Vec<f32>, EngineError> {
        self.blocking(self.read_async(buf, span))
    }

    async fn read_async(&self, buf: &GpuBuf, span: Span) -> Result<Vec<f32>, EngineError> {
        if span.off + span.len > buf.len {
            return Err(EngineError::Invalid(format!(
                "read of {span:?} past {}",
                buf.len
            )));
        }
        let bytes = self.read_raw_async(&buf.buf, span.off, span.len).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    fn host<'a>(
        &self,
        buf: &'a GpuBuf,
        len: usize,
    ) -> Result<std::borrow::Cow<'a, [f32]>, EngineError> {
        Ok(std::borrow::Cow::Owned(
            self.read(buf, Span { off: 0, len })?,
        ))
    }

    fn write(&self, buf: &mut GpuBuf, off: usize, data: &[f32]) -> Result<(), EngineError> {
        if off + data.len() > buf.len {
            return Err(EngineError::Invalid(format!(
                "write at {off} past {}",
                buf.len
            )));
        }
        // Queue writes run before the next submission: submit what was
        // recorded so far first, or the write would overtake it.
        self.flush();
        if !data.is_empty() {
            self.0
                .queue
                .write_buffer(&buf.buf, (off * 4) as u64, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.flush();
        self.wait()
    }

    fn zero(&self, buf: &mut GpuBuf, len: usize) {
        if len > 0 {
            self.record(|enc| enc.clear_buffer(&buf.buf, 0, Some((len * 4) as u64)));
        }
    }

    fn copy(&self, src: &GpuBuf, dst: &mut GpuBuf, len: usize) {
        self.copy_bytes(&src.buf, 0, &dst.buf, 0, len);
    }

    fn add(&self, dst: &mut GpuBuf, src: &GpuBuf, len: usize) {
        for (o, c) in self.pieces(len) {
            let (db, _) = self.range(dst, o, c);
            let (sb, _) = self.range(src, o, c);
            self.launch("add", &[u(c)], &[db, sb], groups(c, 256));
        }
    }

    fn embedding(
        &self,
        params: &GpuBuf,
        table: Span,
        ids: &GpuIds,
        n: usize,
        out: &mut GpuBuf,
        d: usize,
    ) {
        let (tb, toff) = self.range(params, table.off, table.len);
        self.launch(
            "embedding",
            &[u(n), u(d), toff],
            &[tb, ids.all(), out.all()],
            groups(n * d, 256),
        );
    }

    fn embedding_bwd(
        &self,
        grads: &mut GpuBuf,
        table: Span,
        ids: &GpuIds,
        n: usize,
        dout: &GpuBuf,
        d: usize,
    ) {
        let (gb, toff) = self.range(grads, table.off, table.len);
        self.launch(
            "embedding_bwd",
            &[u(n), u(d), toff],
            &[gb, ids.all(), dout.all()],
            groups(d, 256),
        );
    }

    fn rmsnorm(
        &self,
        x: &GpuBuf,
        params: &GpuBuf,
        w: Span,
        out: &mut GpuBuf,
        rstd: &mut GpuBuf,
        n: usize,
        d: usize,
        eps: f64,
    ) {
        let (wb, woff) = self.range(params, w.off, w.len);
        self.launch(
            "rmsnorm",
            &[u(n), u(d), woff, f(eps), 0],
            &[x.all(), wb, out.all(), rstd.all()],
            groups(n, 1),
        );
    }

    fn rmsnorm_apply(
        &self,
        x: &GpuBuf,
        params: &GpuBuf,
        w: Span,
        rstd: &GpuBuf,
        out: &mut GpuBuf,
        n: usize,
        d: usize,
    ) {
        let (wb, woff) = self.range(params, w.off, w.len);
        self.launch(
            "rmsnorm",
            &[u(n), u(d), woff, 0, 1],
            &[x.all(), wb, out.all(), rstd.all()],
            groups(n, 1),
        );
    }

    fn rmsnorm_bwd(
        &self,
        x: &GpuBuf,
        params: &GpuBuf,
        w: Span,
        rstd: &GpuBuf,
        dout: &GpuBuf,
        dx: &mut GpuBuf,
        grads: &mut GpuBuf,
        n: usize,
        d: usize,
    ) {
        let (wb, woff) = self.range(params, w.off, w.len);
        self.launch(
            "rmsnorm_dx",
            &[u(n), u(d), woff],
            &[x.all(), wb, rstd.all(), dout.all(), dx.all()],
            groups(n, 1),
        );
        let (gb, goff) = self.range(grads, w.off, w.len);
        self.launch(
            "rmsnorm_dw",
            &[u(n), u(d), goff],
            &[x.all(), rstd.all(), dout.all(), gb],
            groups(d, 256),
        );
    }

    fn matmul(
        &self,
        x: &GpuBuf,
        params: &GpuBuf,
        w: Span,
        bias: Option<Span>,
        out: &mut GpuBuf,
        (n, i, o): MmDims,
        acc: bool,
    ) {
        // out[r, c] = Σ_k x[r, k] · w[c, k]
        self.gemm(
            (n, o, i),
            (x, 0, i, 1),
            (params, w.off, 1, i),
            (out, 0, o),
            bias.map(|b| (params, b.off)),
            acc,
        );
    }

    fn matmul_dx(
        &self,
        dout: &GpuBuf,
        params: &GpuBuf,
        w: Span,
        dx: &mut GpuBuf,
        (n, i, o): MmDims,
        acc: bool,
    ) {
        // dx[r, c] = Σ_k dout[r, k] · w[k, c]
        self.gemm(
            (n, i, o),
            (dout, 0, o, 1),
            (params, w.off, i, 1),
            (dx, 0, i),
            None,
            acc,
        );
    }

    fn matmul_dw(
        &self,
        dout: &GpuBuf,
        x: &GpuBuf,
        grads: &mut GpuBuf,
        w: Span,
        bias: Option<Span>,
        (n, i, o): MmDims,
    ) {
        // gw[r, c] += Σ_k dout[k, r] · x[k, c]
        self.gemm(
            (o, i, n),
            (dout, 0, 1, o),
            (x, 0, i, 1),
            (grads, w.off, i),
            None,
            true,
        );
        if let Some(b) = bias {
            let (gb, boff) = self.range(grads, b.off, b.len);
            self.launch(
                "colsum",
                &[u(n), u(o), boff],
                &[dout.all(), gb],
                groups(o, 256),
            );
        }
    }

    fn rope(
        &self,
        x: &mut GpuBuf,
        pos: &GpuIds,
        n: usize,
        cos: &GpuBuf,
        sin: &GpuBuf,
        heads: usize,
        hd: usize,
        inverse: bool,
    ) {
        self.launch(
            "rope",
            &[u(n), u(heads), u(hd), u32::from(inverse)],
            &[x.all(), pos.all(), cos.all(), sin.all()],
            groups(n * heads * (hd / 2), 256),
        );
    }

    fn attention(
        &self,
        q: &GpuBuf,
        k: &GpuBuf,
        v: &GpuBuf,
        out: &mut GpuBuf,
        lse: &mut GpuBuf,
        pad: &GpuIds,
        d: AttnDims,
    ) {
        if !attn_ok(d) {
            self.fail(format!("attention: unsupported shape {d:?}"));
            return;
        }
        self.launch(
            "attention",
            &self.attn_params(d),
            &[q.all(), k.all(), v.all(), pad.all(), out.all(), lse.all()],
            groups(d.b * d.nh * d.t, 64),
        );
    }

    fn attention_bwd(
        &self,
        q: &GpuBuf,
        k: &GpuBuf,
        v: &GpuBuf,
        out: &GpuBuf,
        lse: &GpuBuf,
        dout: &GpuBuf,
        dq: &mut GpuBuf,
        dk: &mut GpuBuf,
        dv: &mut GpuBuf,
        pad: &GpuIds,
        d: AttnDims,
    ) {
        if !attn_ok(d) {
            self.fail(format!("attention backward: unsupported shape {d:?}"));
            return;
        }
        let delta = match self.buffer(d.b * d.nh * d.t) {
            Ok(b) => b,
            Err(e) => {
                self.fail(e.to_string());
                return;
            }
        };
        self.launch(
            "attention_delta",
            &[u(d.b), u(d.t), u(d.nh), u(d.hd)],
            &[dout.all(), out.all(), delta.all()],
            groups(d.b * d.nh * d.t, 64),
        );
        let p = self.attn_params(d);
        self.launch(
            "attention_dq",
            &p,
            &[
                q.all(),
                k.all(),
                v.all(),
                lse.all(),
                dout.all(),
                delta.all(),
                pad.all(),
                dq.all(),
            ],
            groups(d.b * d.nh * d.t, 64),
        );
        for (mode, dst) in [(0u32, dv.all()), (1, dk.all())] {
            let mut pm = p.clone();
            pm.push(mode);
            self.launch(
                "attention_dkv",
                &pm,
                &[
                    q.all(),
                    k.all(),
                    v.all(),
                    lse.all(),
                    dout.all(),
                    delta.all(),
                    pad.all(),
                    dst,
                ],
                groups(d.b * d.nkv * d.t, 64),
            );
        }
    }

    fn kv_write(
        &self,
        cache: &mut GpuBuf,
        src: &GpuBuf,
        b: usize,
        t: usize,
        cap: usize,
        len: usize,
        width: usize,
    ) {
        for s in 0..b {
            self.copy_bytes(
                &src.buf,
                s * t * width,
                &cache.buf,
                (s * cap + len) * width,
                t * width,
            );
        }
    }

    fn attention_cached(
        &self,
        q: &GpuBuf,
        kc: &GpuBuf,
        vc: &GpuBuf,
        out: &mut GpuBuf,
        pad: &GpuIds,
        len: usize,
        cap: usize,
        d: AttnDims,
    ) {
        if !attn_ok(d) {
            self.fail(format!("cached attention: unsupported shape {d:?}"));
            return;
        }
        let mut p = self.attn_params(d);
        p.extend([u(len), u(cap)]);
        self.launch(
            "attention_cached",
            &p,
            &[q.all(), kc.all(), vc.all(), pad.all(), out.all()],
            groups(d.b * d.nh * d.t, 64),
        );
    }

    fn copy_rows(
        &self,
        src: &GpuBuf,
        from: usize,
        dst: &mut GpuBuf,
        to: usize,
        rows: usize,
        width: usize,
    ) {
        self.copy_bytes(&src.buf, from * width, &dst.buf, to * width, rows * width);
    }

    fn greedy_rows(
        &self,
        logits: &GpuBuf,
        rows: usize,
        v: usize,
        out: &mut GpuBuf,
    ) -> Result<(), EngineError> {
        if rows * v > logits.len || 2 * rows > out.len {
            return Err(EngineError::Invalid(format!(
                "greedy_rows: {rows} rows of {v} in {} logits, {} outputs",
                logits.len, out.len
            )));
        }
        if rows > 0 && v > 0 {
            self.launch(
                "row_argmax",
                &[u(rows), u(v)],
                &[logits.all(), out.all()],
                groups(rows, 1),
            );
        }
        Ok(())
    }

    fn greedy_on_device(&self) -> bool {
        true
    }

    fn swiglu(&self, g: &GpuBuf, up: &GpuBuf, out: &mut GpuBuf, len: usize) {
        self.launch(
            "swiglu",
            &[u(len)],
            &[g.all(), up.all(), out.all()],
            groups(len, 256),
        );
    }

    fn swiglu_bwd(
        &self,
        g: &GpuBuf,
        up: &GpuBuf,
        dout: &GpuBuf,
        dg: &mut GpuBuf,
        du: &mut GpuBuf,
        len: usize,
    ) {
        self.launch(
            "swiglu_bwd",
            &[u(len)],
            &[g.all(), up.all(), dout.all(), dg.all(), du.all()],
            groups(len, 256),
        );
    }

    fn tail_scratch(&self, v: usize, d: usize) -> Result<GpuTailScratch, EngineError> {
        // As many positions as the adapter's largest binding allows, up to TAIL_CHUNK.
        let fit = (self.0.limits.max_storage_buffer_binding_size / 4 / v.max(1) as u64) as usize;
        let chunk = TAIL_CHUNK.min(fit).max(1);
        Ok(GpuTailScratch {
            logits: self.buffer(chunk * v)?,
            h: self.buffer(chunk * d)?,
            dh: self.buffer(chunk * d)?,
            dlp: self.buffer(chunk)?,
            chunk,
        })
    }

    fn logprob_tail(
        &self,
        h: &GpuBuf,
        params: &GpuBuf,
        head: Span,
        rows: &GpuIds,
        targets: &GpuIds,
        n: usize,
        mut grad: Option<(&mut GradFn<'_, f32>, &mut GpuBuf, &mut GpuBuf)>,
        sc: &mut GpuTailScratch,
        (v, d): (usize, usize),
    ) -> Result<Vec<f32>, EngineError> {
        let lp_all = self.buffer(n)?;
        let mut lp = vec![0f32; n];
        let mut start = 0;
        while start < n {
            let c = sc.chunk.min(n - start);
            self.launch(
                "gather_rows",
                &[u(c), u(d), u(start)],
                &[h.all(), rows.all(), sc.h.all()],
                groups(c * d, 256),
            );
            self.gemm(
                (c, v, d),
                (&sc.h, 0, d, 1),
                (params, head.off, 1, d),
                (&sc.logits, 0, v),
                None,
                false,
            );
            self.launch(
                "log_softmax",
                &[u(c), u(v), u(start), u(start)],
                &[sc.logits.all(), targets.all(), lp_all.all()],
                groups(c, 1),
            );
            if let Some((hook, dh, grads)) = grad.as_mut() {
                let got = self.read(&lp_all, Span { off: start, len: c })?;
                lp[start..start + c].copy_from_slice(&got);
                let mut dlp = vec![0f32; c];
                hook(start, &got, &mut dlp);
                self.write(&mut sc.dlp, 0, &dlp)?;
                self.launch(
                    "dlogits",
                    &[u(c), u(v), u(start)],
                    &[sc.logits.all(), sc.dlp.all(), targets.all()],
                    groups(c * v, 256),
                );
                // dh_chunk = dlogits · head; grads[head] += dlogitsᵀ · h_chunk
                self.gemm(
                    (c, d, v),
                    (&sc.logits, 0, v, 1),
                    (params, head.off, d, 1),
                    (&sc.dh, 0, d),
                    None,
                    false,
                );
                self.gemm(
                    (v, d, c),
                    (&sc.logits, 0, 1, v),
                    (&sc.h, 0, d, 1),
                    (grads, head.off, d),
                    None,
                    true,
                );
                self.launch(
                    "scatter_add_rows",
                    &[u(c), u(d), u(start)],
                    &[sc.dh.all(), rows.all(), dh.all()],
                    groups(d, 256),
                );
            }
            start += c;
        }
        if grad.is_none() {
            lp = self.read(&lp_all, Span { off: 0, len: n })?;
        } else {
            self.take_error()?;
        }
        Ok(lp)
    }

    fn adamw(
        &self,
        params: &mut GpuBuf,
        grads: &GpuBuf,
        m: &mut GpuBuf,
        v: &mut GpuBuf,
        lr: f64,
        (b1, b2): (f64, f64),
        eps: f64,
        wd: f64,
        step: usize,
    ) {
        let c1 = 1.0 - b1.powi(step as i32);
        let c2 = 1.0 - b2.powi(step as i32);
        for (o, c) in self.pieces(params.len) {
            let binds = [
                self.range(params, o, c).0,
                self.range(grads, o, c).0,
                self.range(m, o, c).0,
                self.range(v, o, c).0,
            ];
            self.launch(
                "adamw",
                &[u(c), f(b1), f(b2), f(eps), f(wd), f(lr), f(c1), f(c2)],
                &binds,
                groups(c, 256),
            );
        }
    }

    fn sq_sum(&self, x: &GpuBuf, len: usize) -> Result<f64, EngineError> {
        let mut total = 0.0;
        for (o, c) in self.pieces(len) {
            let parts = c.div_ceil(2048);
            let partial = self.buffer(parts)?;
            self.launch(
                "sq_sum",
                &[u(c)],
                &[self.range(x, o, c).0, partial.all()],
                groups(parts, 1),
            );
            let p = self.read(&partial, Span { off: 0, len: parts })?;
            total += p.iter().map(|&a| f64::from(a)).sum::<f64>();
        }
        Ok(total)
    }

    fn scale(&self, x: &mut GpuBuf, len: usize, s: f64) {
        for (o, c) in self.pieces(len) {
            let xb = self.range(x, o, c).0;
            self.launch("scale", &[u(c), f(s)], &[xb], groups(c, 256));
        }
    }
}

impl Wgpu {
    /// Keeps a launch-time error for the next `read`/`sync`.
    fn fail(&self, msg: String) {
        lock(&self.0.error).get_or_insert(msg);
    }
}
