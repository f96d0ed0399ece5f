//! HLS renditions, segments and their replicas: what the CDN serves and the workers keep durable.
