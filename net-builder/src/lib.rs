//! Model import: to be built in the layers-and-import issue.
