//! Image registry: Glance-style image API, format inspection, conversion, cache (issue 6).
