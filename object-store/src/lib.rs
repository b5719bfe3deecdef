//! Object store: storage nodes, proxy, Swift and S3 APIs (issue 3 onwards).
