//! State store: the Store trait and its redb backend
#![warn(missing_docs)]
