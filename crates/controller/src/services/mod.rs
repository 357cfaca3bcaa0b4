//! Services: a spec run as tasks over the cluster's nodes, behind one name.

pub(crate) mod orchestrate;
