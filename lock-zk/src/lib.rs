//! ZooKeeper backend of fencelock (under construction).
