//! The SeRL trainer: configuration, the self-play loop, the policy update,
//! evaluation, checkpoints and resume.

mod config;
mod data;
pub mod demo;
mod learner;
mod optim;
pub mod plot;
mod sft;
mod trainer;

pub use config::{Config, RewardSource};
pub use data::{Example, is_correct, parse_examples, read_examples};
pub use learner::{Learner, Scorer};
pub use optim::cosine_lr;
pub use sft::{SftConfig, SftProgress, SftSummary, sft, write_jsonl};
pub use trainer::{
    EvalResult, LabelFn, PhaseSeconds, ProgressFn, QuestionEval, RewardFn, StepStats, Trainer,
    evaluate_model, evaluate_model_answers,
};

use crate::model::ModelError;
use crate::rl::RlError;

/// What can go wrong configuring or running training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad configuration value (names the field).
    #[error("config: {0}")]
    Config(String),
    /// Bad data (names file, line and field).
    #[error("data: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing or inconsistent.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The model engine failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The compute engine rejected a batch or could not allocate.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The RL arithmetic rejected its inputs.
    #[error("rl: {0}")]
    Rl(#[from] RlError),
    /// The stop flag was set; the step was abandoned.
    #[error("interrupted")]
    Interrupted,
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(ModelError::Tensor(e))
    }
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
