//! etcd backend of fencelock (under construction).
