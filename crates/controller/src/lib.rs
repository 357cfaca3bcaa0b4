//! Orchestration: intent to store, planners, kernel executor, reconcile
#![warn(missing_docs)]
