//! The S3 API on the proxy, built on `s3s` (routing, XML, SigV4 including
//! presigned URLs and aws-chunked bodies): a thin layer that turns each
//! typed S3 input into the object layer's typed operations
//! ([`crate::proxy::objects`]) and maps their errors in one place
//! ([`error`]). A bucket is a container of the account that owns the
//! access key; objects are the same objects the Swift API serves
//! (`x-amz-meta-*` is `x-object-meta-*`).

mod acl;
mod attributes;
mod auth;
mod bucket;
mod checksum;
mod cors;
mod encryption;
mod error;
mod lifecycle;
pub(crate) mod multipart;
mod object;
mod object_lock;
mod post_form;
pub(crate) mod tagging;
mod versioning;

use crate::proxy::objects::{ObjectError, ObjectMeta, ObjectPath, Objects};
use acl::Granting;
use base64::Engine;
use http::{Request, Response};
use http_body_util::BodyExt;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Request, S3Result};
use service_kit::http_util::Body;
use service_kit::server::RequestBody;
use std::sync::Arc;

pub use auth::VirtualHosts;

/// The S3 implementation: every operation is one or more calls of the
/// object layer.
pub struct NuboS3 {
    objects: Arc<Objects>,
}

/// The storage account (`AUTH_<account>`) of the request's access key.
fn account_of<T>(req: &S3Request<T>) -> S3Result<String> {
    let creds = req
        .credentials
        .as_ref()
        .ok_or_else(|| s3_error!(AccessDenied))?;
    let key = auth::access_key_of(&creds.access_key);
    let (account, _) = key
        .split_once(':')
        .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
    Ok(format!("{}{account}", service_kit::auth::RESELLER_PREFIX))
}

/// The account a read is made in: the signer's, or, for a request
/// without credentials, the bucket owner's if the bucket's or the
/// object's ACL lets anyone read (see [`acl`]).
async fn reader_account<T>(
    objects: &Objects,
    req: &S3Request<T>,
    bucket: &str,
    what: acl::Anonymous<'_>,
) -> S3Result<String> {
    if req.credentials.is_some() {
        return account_of(req);
    }
    acl::anonymous_account(objects, bucket, what).await
}

/// The S3 front end: s3s's service over [`NuboS3`], and what answers the
/// requests s3s does not see (CORS preflights) or that need more than its
/// answer (CORS headers, error ids).
pub struct S3Front {
    service: S3Service,
    objects: Arc<Objects>,
    domain: String,
}

pub fn service(
    objects: Arc<Objects>,
    config: &crate::config::ProxyConfig,
    identity: Arc<service_kit::auth::TempAuth>,
) -> S3Front {
    let mut b = S3ServiceBuilder::new(NuboS3 {
        objects: objects.clone(),
    });
    b.set_auth(auth::Keys::new(&config.auth, identity.clone()));
    b.set_access(acl::Access::new(identity));
    b.set_host(VirtualHosts::new(&config.s3_domain));
    S3Front {
        service: b.build(),
        objects,
        domain: config.s3_domain.to_ascii_lowercase(),
    }
}

/// An S3 error answer written here rather than by s3s.
pub(crate) fn error_response(
    status: http::StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        service_kit::http_util::xml_escape(message),
    );
    let mut resp = Response::new(service_kit::http_util::full(body));
    *resp.status_mut() = status;
    service_kit::http_util::set_header(resp.headers_mut(), "content-type", "application/xml");
    resp
}

/// Serves one S3 request.
pub async fn handle(front: &S3Front, req: Request<RequestBody>) -> Response<Body> {
    let request_id = format!(
        "{:016X}",
        u64::from_be_bytes(service_kit::ids::rand_bytes::<8>())
    );
    let resource = req.uri().path().to_string();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let bucket = cors::bucket_of(host.as_deref(), &resource, &front.domain);
    let origin =
        service_kit::http_util::header_str(req.headers(), "origin").map(|o| o.into_owned());
    let method = req.method().clone();
    let mut req = req;
    let mut resp = if method == http::Method::OPTIONS {
        cors::preflight(&front.objects, bucket.clone(), req.headers()).await
    } else if let Err((code, message)) = auth::settle(&mut req) {
        error_response(http::StatusCode::FORBIDDEN, code, &message)
    } else {
        call(&front.service, req).await
    };
    // A HEAD of a range or a part answers 206, as its GET does (s3s sends
    // every HeadObject answer as 200).
    if method == http::Method::HEAD
        && resp.status() == http::StatusCode::OK
        && resp.headers().contains_key(http::header::CONTENT_RANGE)
    {
        *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
    if resp.status().is_client_error() || resp.status().is_server_error() {
        resp = with_error_ids(resp, &resource, &request_id).await;
    }
    if let (Some(origin), Some(bucket), false) = (&origin, &bucket, method == http::Method::OPTIONS)
    {
        if let Some(h) = cors::for_answer(&front.objects, bucket, origin, &method).await {
            resp.headers_mut().extend(h);
        }
    }
    service_kit::http_util::set_header(resp.headers_mut(), "x-amz-request-id", &request_id);
    resp
}

/// s3s's answer to a request.
async fn call(service: &S3Service, req: Request<RequestBody>) -> Response<Body> {
    let req = post_form::substituted(req).await;
    match service.call(req).await {
        Ok(r) => r.map(|b| {
            b.map_err(|e| -> service_kit::http_util::BoxError { e.to_string().into() })
                .boxed_unsync()
        }),
        Err(e) => {
            tracing::error!(error = ?e, "S3 request failed");
            service_kit::http_util::text(http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Every S3 error body names its resource and request, as S3's do (s3s
/// writes neither for the errors it raises itself).
async fn with_error_ids(resp: Response<Body>, resource: &str, request_id: &str) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let Some(bytes) = service_kit::http_util::collect_limited(body, 64 << 10).await else {
        return Response::from_parts(parts, service_kit::http_util::empty());
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A POST form that breaks its policy's conditions: S3 answers 403
    // AccessDenied ("Invalid according to Policy"), s3s 400.
    if text.contains("<Code>InvalidPolicyDocument</Code>") && text.contains("Policy condition") {
        text = text
            .replace(
                "<Code>InvalidPolicyDocument</Code>",
                "<Code>AccessDenied</Code>",
            )
            .replace("<Message>", "<Message>Invalid according to Policy: ");
        parts.status = http::StatusCode::FORBIDDEN;
    }
    // An unreadable policy: S3's code for it.
    if text.contains("<Message>invalid field: policy</Message>") {
        text = text
            .replace(
                "<Code>InvalidRequest</Code>",
                "<Code>InvalidPolicyDocument</Code>",
            )
            .replace("invalid field: policy", "Invalid Policy: Invalid JSON.");
    }
    if let Some(end) = text.rfind("</Error>") {
        let mut ids = String::new();
        if !text.contains("<Resource>") {
            ids.push_str(&format!(
                "<Resource>{}</Resource>",
                service_kit::http_util::xml_escape(resource)
            ));
        }
        if !text.contains("<RequestId>") {
            ids.push_str(&format!("<RequestId>{request_id}</RequestId>"));
        }
        text.insert_str(end, &ids);
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, service_kit::http_util::full(text))
}

fn ok<T>(output: T) -> S3Result<s3s::S3Response<T>> {
    Ok(s3s::S3Response::new(output))
}

#[async_trait::async_trait]
impl s3s::S3 for NuboS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<s3s::S3Response<ListBucketsOutput>> {
        let account = account_of(&req)?;
        ok(bucket::list_buckets(&self.objects, &account, req.input).await?)
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<s3s::S3Response<CreateBucketOutput>> {
        let name = req.input.bucket.clone();
        let account = account_of(&req)?;
        let i = &req.input;
        let canned = acl::Canned::of_request(i.acl.as_ref().map(|a| a.as_str()), i.has_grants())?;
        bucket::create(&self.objects, &account, &name).await?;
        if let Some(c) = canned {
            acl::set_bucket(&self.objects, &account, &name, c).await?;
        }
        if req.input.object_lock_enabled_for_bucket == Some(true) {
            object_lock::enable_on_create(&self.objects, &account, &name).await?;
        }
        ok(CreateBucketOutput {
            location: Some(format!("/{name}")),
        })
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<s3s::S3Response<HeadBucketOutput>> {
        bucket::require(&self.objects, &account_of(&req)?, &req.input.bucket).await?;
        ok(HeadBucketOutput {
            bucket_region: Some(REGION.into()),
            ..Default::default()
        })
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<s3s::S3Response<DeleteBucketOutput>> {
        bucket::delete(&self.objects, &account_of(&req)?, &req.input.bucket).await?;
        ok(DeleteBucketOutput {})
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<s3s::S3Response<GetBucketLocationOutput>> {
        bucket::require(&self.objects, &account_of(&req)?, &req.input.bucket).await?;
        // us-east-1 is reported as an empty constraint, as AWS does.
        ok(GetBucketLocationOutput {
            location_constraint: None,
        })
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<s3s::S3Response<ListObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let account = reader_account(&self.objects, &req, &bucket, acl::Anonymous::Listing).await?;
        let i = req.input;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let marker = i.marker.clone().unwrap_or_default();
        let keys = bucket::list_keys(
            &self.objects,
            &account,
            &i.bucket,
            bucket::KeyQuery {
                prefix: &prefix,
                delimiter: i.delimiter.as_deref().filter(|d| !d.is_empty()),
                marker: &marker,
                max_keys: max,
                fetch_owner: true,
            },
        )
        .await?;
        let url = url_encoding(i.encoding_type.as_ref());
        ok(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(url.apply(&prefix)),
            marker: Some(url.apply(&marker)),
            max_keys: Some(max as i32),
            is_truncated: Some(keys.truncated),
            next_marker: if keys.truncated && i.delimiter.as_deref().is_some_and(|d| !d.is_empty())
            {
                keys.last.as_deref().map(|l| url.apply(l))
            } else {
                None
            },
            delimiter: i.delimiter.map(|d| url.apply(&d)),
            encoding_type: i.encoding_type,
            contents: Some(url.objects(keys.objects)),
            common_prefixes: Some(url.prefixes(keys.prefixes)),
            ..Default::default()
        })
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<s3s::S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let account = reader_account(&self.objects, &req, &bucket, acl::Anonymous::Listing).await?;
        let i = req.input;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let after = match &i.continuation_token {
            Some(t) => continued_after(t)?,
            None => i.start_after.clone().unwrap_or_default(),
        };
        let keys = bucket::list_keys(
            &self.objects,
            &account,
            &i.bucket,
            bucket::KeyQuery {
                prefix: &prefix,
                delimiter: i.delimiter.as_deref().filter(|d| !d.is_empty()),
                marker: &after,
                max_keys: max,
                fetch_owner: i.fetch_owner.unwrap_or(false),
            },
        )
        .await?;
        let url = url_encoding(i.encoding_type.as_ref());
        let count = keys.objects.len() + keys.prefixes.len();
        ok(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(url.apply(&prefix)),
            max_keys: Some(max as i32),
            key_count: Some(count as i32),
            is_truncated: Some(keys.truncated),
            continuation_token: i.continuation_token,
            next_continuation_token: keys
                .truncated
                .then(|| keys.last.as_deref().map(continuation_token))
                .flatten(),
            start_after: i.start_after.map(|s| url.apply(&s)),
            delimiter: i.delimiter.map(|d| url.apply(&d)),
            encoding_type: i.encoding_type,
            contents: Some(url.objects(keys.objects)),
            common_prefixes: Some(url.prefixes(keys.prefixes)),
            ..Default::default()
        })
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<s3s::S3Response<ListObjectVersionsOutput>> {
        let account = account_of(&req)?;
        let max = max_keys(req.input.max_keys)?;
        ok(versioning::list(&self.objects, &account, req.input, max).await?)
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<s3s::S3Response<PutObjectLockConfigurationOutput>> {
        let account = account_of(&req)?;
        object_lock::put_configuration(&self.objects, &account, req.input).await?;
        ok(PutObjectLockConfigurationOutput::default())
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<s3s::S3Response<GetObjectLockConfigurationOutput>> {
        let account = account_of(&req)?;
        ok(object_lock::get_configuration(&self.objects, &account, &req.input.bucket).await?)
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<s3s::S3Response<PutObjectRetentionOutput>> {
        let account = account_of(&req)?;
        object_lock::put_retention(&self.objects, &account, req.input).await?;
        ok(PutObjectRetentionOutput::default())
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<s3s::S3Response<GetObjectRetentionOutput>> {
        let account = account_of(&req)?;
        ok(object_lock::get_retention(&self.objects, &account, req.input).await?)
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<s3s::S3Response<PutObjectLegalHoldOutput>> {
        let account = account_of(&req)?;
        object_lock::put_legal_hold(&self.objects, &account, req.input).await?;
        ok(PutObjectLegalHoldOutput::default())
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<s3s::S3Response<GetObjectLegalHoldOutput>> {
        let account = account_of(&req)?;
        ok(object_lock::get_legal_hold(&self.objects, &account, req.input).await?)
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<s3s::S3Response<PutBucketVersioningOutput>> {
        let account = account_of(&req)?;
        versioning::put(&self.objects, &account, req.input).await?;
        ok(PutBucketVersioningOutput::default())
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<s3s::S3Response<GetBucketVersioningOutput>> {
        let account = account_of(&req)?;
        ok(versioning::get(&self.objects, &account, &req.input.bucket).await?)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<s3s::S3Response<PutObjectOutput>> {
        let account = account_of(&req)?;
        let trailers = req.trailing_headers.as_ref();
        ok(object::put(&self.objects, &account, req.input, &req.headers, trailers).await?)
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<s3s::S3Response<GetObjectAttributesOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let what = acl::Anonymous::Object(&key, req.input.version_id.as_deref());
        let account = reader_account(&self.objects, &req, &bucket, what).await?;
        ok(attributes::get(&self.objects, &account, req.input).await?)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<s3s::S3Response<GetObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let what = acl::Anonymous::Object(&key, req.input.version_id.as_deref());
        let account = reader_account(&self.objects, &req, &bucket, what).await?;
        let ranged = req.input.range.is_some();
        let out = object::get(&self.objects, &account, req.input).await?;
        let mut resp = s3s::S3Response::new(out);
        if ranged {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<s3s::S3Response<HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let what = acl::Anonymous::Object(&key, req.input.version_id.as_deref());
        let account = reader_account(&self.objects, &req, &bucket, what).await?;
        ok(object::head_object(&self.objects, &account, req.input).await?)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<s3s::S3Response<DeleteObjectOutput>> {
        let account = account_of(&req)?;
        let i = &req.input;
        let done = object::delete(
            &self.objects,
            &account,
            &i.bucket,
            &i.key,
            i.version_id.as_deref(),
            i.bypass_governance_retention.unwrap_or(false),
        )
        .await?;
        let mut resp = s3s::S3Response::new(DeleteObjectOutput {
            delete_marker: done.delete_marker.then_some(true),
            version_id: done.version_id,
            ..Default::default()
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<s3s::S3Response<DeleteObjectsOutput>> {
        let account = account_of(&req)?;
        ok(object::delete_many(&self.objects, &account, req.input).await?)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<s3s::S3Response<CreateMultipartUploadOutput>> {
        let account = account_of(&req)?;
        ok(multipart::create(&self.objects, &account, req.input, &req.headers).await?)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<s3s::S3Response<UploadPartOutput>> {
        let account = account_of(&req)?;
        let trailers = req.trailing_headers.as_ref();
        ok(
            multipart::upload_part(&self.objects, &account, req.input, &req.headers, trailers)
                .await?,
        )
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<s3s::S3Response<UploadPartCopyOutput>> {
        let account = account_of(&req)?;
        ok(multipart::upload_part_copy(&self.objects, &account, req.input).await?)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<s3s::S3Response<CompleteMultipartUploadOutput>> {
        let account = account_of(&req)?;
        ok(multipart::complete(&self.objects, &account, req.input).await?)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<s3s::S3Response<AbortMultipartUploadOutput>> {
        let account = account_of(&req)?;
        let mut resp =
            s3s::S3Response::new(multipart::abort(&self.objects, &account, req.input).await?);
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<s3s::S3Response<ListPartsOutput>> {
        let account = account_of(&req)?;
        ok(multipart::list_parts(&self.objects, &account, req.input).await?)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<s3s::S3Response<ListMultipartUploadsOutput>> {
        let account = account_of(&req)?;
        ok(multipart::list_uploads(&self.objects, &account, req.input).await?)
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<s3s::S3Response<GetBucketAclOutput>> {
        let account = account_of(&req)?;
        bucket::require(&self.objects, &account, &req.input.bucket).await?;
        let meta = self
            .objects
            .container_meta(&account, &req.input.bucket)
            .await?;
        ok(GetBucketAclOutput {
            grants: Some(acl::grants(&account, acl::bucket_public(&meta).0)),
            owner: Some(bucket::owner(&account)),
        })
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<s3s::S3Response<PutBucketAclOutput>> {
        let account = account_of(&req)?;
        let i = &req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let canned = acl::Canned::of_request(i.acl.as_ref().map(|a| a.as_str()), i.has_grants())?
            .ok_or_else(|| s3_error!(MissingSecurityHeader, "x-amz-acl is required."))?;
        acl::set_bucket(&self.objects, &account, &i.bucket, canned).await?;
        ok(PutBucketAclOutput {})
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<s3s::S3Response<GetObjectAclOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let path = ObjectPath::new(account.clone(), &i.bucket, &i.key);
        let stored = self
            .objects
            .stored_version(&path, i.version_id.as_deref())
            .await?;
        let meta = ObjectMeta::from_stored(&self.objects.head_newest(&stored).await?);
        ok(GetObjectAclOutput {
            grants: Some(acl::grants(&account, acl::object_public(&meta))),
            owner: Some(bucket::owner(&account)),
            request_charged: None,
        })
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<s3s::S3Response<PutObjectAclOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let canned = acl::Canned::of_request(i.acl.as_ref().map(|a| a.as_str()), i.has_grants())?
            .ok_or_else(|| s3_error!(MissingSecurityHeader, "x-amz-acl is required."))?;
        let path = ObjectPath::new(account, &i.bucket, &i.key);
        let stored = self
            .objects
            .stored_version(&path, i.version_id.as_deref())
            .await?;
        let (k, v) = acl::object_entry(canned);
        match self.objects.update_system_meta(&stored, &[(k, v)]).await {
            Ok(()) => ok(PutObjectAclOutput {
                request_charged: None,
            }),
            Err(ObjectError::NoSuchObject) => Err(s3_error!(NoSuchKey)),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<s3s::S3Response<PutObjectTaggingOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let tags = tagging::from_tag_set(&i.tagging.tag_set);
        let path = ObjectPath::new(account, &i.bucket, &i.key);
        let stored = self
            .objects
            .stored_version(&path, i.version_id.as_deref())
            .await?;
        tagging::set(&self.objects, &stored, &tags).await?;
        ok(PutObjectTaggingOutput {
            version_id: i.version_id,
        })
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<s3s::S3Response<GetObjectTaggingOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let path = ObjectPath::new(account, &i.bucket, &i.key);
        // A versioned object's tags are its version's.
        let stored = self
            .objects
            .stored_version(&path, i.version_id.as_deref())
            .await?;
        let meta = ObjectMeta::from_stored(&self.objects.head_newest(&stored).await?);
        ok(GetObjectTaggingOutput {
            tag_set: tagging::tag_set(tagging::of(&meta)),
            version_id: i.version_id,
        })
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<s3s::S3Response<DeleteObjectTaggingOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let path = ObjectPath::new(account, &i.bucket, &i.key);
        let stored = self
            .objects
            .stored_version(&path, i.version_id.as_deref())
            .await?;
        tagging::set(&self.objects, &stored, &[]).await?;
        let mut resp = s3s::S3Response::new(DeleteObjectTaggingOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<s3s::S3Response<PutBucketTaggingOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let tags = tagging::from_tag_set(&i.tagging.tag_set);
        let kept = tagging::encode_limited(&tags, tagging::MAX_BUCKET_TAGS)?;
        bucket::set_config(
            &self.objects,
            &account,
            &i.bucket,
            tagging::BUCKET_HEADER,
            &kept,
        )
        .await?;
        let mut resp = s3s::S3Response::new(PutBucketTaggingOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<s3s::S3Response<GetBucketTaggingOutput>> {
        let account = account_of(&req)?;
        let h = match self
            .objects
            .head_container(&account, &req.input.bucket)
            .await
        {
            Ok(h) => h,
            Err(ObjectError::NoSuchContainer) => return Err(s3_error!(NoSuchBucket)),
            Err(e) => return Err(e.into()),
        };
        match service_kit::http_util::header_str(&h, tagging::BUCKET_HEADER) {
            Some(t) if !t.is_empty() => ok(GetBucketTaggingOutput {
                tag_set: tagging::tag_set(tagging::parse(&t)),
            }),
            _ => Err(s3_error!(NoSuchTagSet, "The TagSet does not exist")),
        }
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<s3s::S3Response<DeleteBucketTaggingOutput>> {
        let account = account_of(&req)?;
        bucket::require(&self.objects, &account, &req.input.bucket).await?;
        bucket::set_config(
            &self.objects,
            &account,
            &req.input.bucket,
            tagging::BUCKET_HEADER,
            "",
        )
        .await?;
        let mut resp = s3s::S3Response::new(DeleteBucketTaggingOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<s3s::S3Response<PutBucketCorsOutput>> {
        let account = account_of(&req)?;
        let i = req.input;
        bucket::require(&self.objects, &account, &i.bucket).await?;
        let rules = cors::from_config(&i.cors_configuration)?;
        let kept = serde_json::to_string(&rules).map_err(|_| s3_error!(InternalError))?;
        bucket::set_config(&self.objects, &account, &i.bucket, cors::HEADER, &kept).await?;
        ok(PutBucketCorsOutput::default())
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<s3s::S3Response<GetBucketCorsOutput>> {
        let account = account_of(&req)?;
        match cors::rules(&self.objects, &account, &req.input.bucket).await? {
            Some(rules) => ok(GetBucketCorsOutput {
                cors_rules: Some(cors::to_config(rules)),
            }),
            None => Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            )),
        }
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<s3s::S3Response<DeleteBucketCorsOutput>> {
        let account = account_of(&req)?;
        bucket::require(&self.objects, &account, &req.input.bucket).await?;
        bucket::set_config(&self.objects, &account, &req.input.bucket, cors::HEADER, "").await?;
        let mut resp = s3s::S3Response::new(DeleteBucketCorsOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<s3s::S3Response<PutBucketEncryptionOutput>> {
        let account = account_of(&req)?;
        let i = &req.input;
        encryption::put_bucket(
            &self.objects,
            &account,
            &i.bucket,
            &i.server_side_encryption_configuration,
        )
        .await?;
        ok(PutBucketEncryptionOutput::default())
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<s3s::S3Response<GetBucketEncryptionOutput>> {
        let account = account_of(&req)?;
        let config = encryption::get_bucket(&self.objects, &account, &req.input.bucket).await?;
        ok(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(config),
        })
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<s3s::S3Response<DeleteBucketEncryptionOutput>> {
        let account = account_of(&req)?;
        encryption::delete_bucket(&self.objects, &account, &req.input.bucket).await?;
        let mut resp = s3s::S3Response::new(DeleteBucketEncryptionOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<s3s::S3Response<PutBucketLifecycleConfigurationOutput>> {
        let account = account_of(&req)?;
        let i = &req.input;
        lifecycle::put(
            &self.objects,
            &account,
            &i.bucket,
            i.lifecycle_configuration.as_ref(),
        )
        .await?;
        ok(PutBucketLifecycleConfigurationOutput::default())
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<s3s::S3Response<GetBucketLifecycleConfigurationOutput>> {
        let account = account_of(&req)?;
        let rules = lifecycle::get(&self.objects, &account, &req.input.bucket).await?;
        ok(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules),
            ..Default::default()
        })
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<s3s::S3Response<DeleteBucketLifecycleOutput>> {
        let account = account_of(&req)?;
        lifecycle::delete(&self.objects, &account, &req.input.bucket).await?;
        let mut resp = s3s::S3Response::new(DeleteBucketLifecycleOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<s3s::S3Response<CopyObjectOutput>> {
        let account = account_of(&req)?;
        ok(object::copy(&self.objects, &account, req.input, &req.headers).await?)
    }
}

const REGION: &str = "us-east-1";

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

/// A continuation token (ListObjectsV2, ListBuckets): the last name of the
/// page before, opaque to clients.
pub(crate) fn continuation_token(last: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(last)
}

/// The name a continuation token says to list after.
pub(crate) fn continued_after(token: &str) -> S3Result<String> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The continuation token provided is incorrect"
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The common prefix a listed key falls in: the key up to and with the
/// first `delimiter` after `prefix`, if there is one.
pub(crate) fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let i = key.get(prefix.len()..)?.find(d)?;
    Some(key[..prefix.len() + i + d.len()].to_string())
}

/// `encoding-type=url`: keys and prefixes in the response are URL-encoded.
pub(crate) struct UrlEncoding(bool);

pub(crate) fn url_encoding(e: Option<&EncodingType>) -> UrlEncoding {
    UrlEncoding(e.is_some_and(|e| e.as_str() == EncodingType::URL))
}

impl UrlEncoding {
    pub(crate) fn apply(&self, s: &str) -> String {
        if self.0 {
            percent_encoding::utf8_percent_encode(s, service_kit::http_util::PATH).to_string()
        } else {
            s.to_string()
        }
    }
    fn objects(&self, objects: Vec<Object>) -> Vec<Object> {
        objects
            .into_iter()
            .map(|mut o| {
                o.key = o.key.map(|k| self.apply(&k));
                o
            })
            .collect()
    }
    pub(crate) fn prefixes(&self, prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(self.apply(&p)),
            })
            .collect()
    }
}
