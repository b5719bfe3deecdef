//! Canned ACLs (`private`, `public-read`) on buckets and objects, what
//! they let a request without credentials read, and the check s3s runs
//! before each operation (unsigned requests, the `reader` role).
//!
//! A `public-read` bucket is Swift's public container (`X-Container-Read:
//! .r:*,.rlistings`), so an anonymous reader gets the same answer from
//! both APIs; a `public-read` object keeps its ACL in system metadata
//! (`s3-acl`). Grants by XML policy or `x-amz-grant-*` headers, and the
//! other canned ACLs, answer `NotImplemented`.

use super::bucket;
use crate::proxy::objects::{ObjectMeta, ObjectPath, Objects};
use http::HeaderMap;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{
    CreateBucketInput, Grant, Grantee, Grants, Permission, PutBucketAclInput, PutObjectAclInput,
    PutObjectInput, Type,
};
use s3s::{s3_error, S3Result};
use service_kit::auth::TempAuth;
use service_kit::http_util::header_str;
use std::sync::Arc;

/// The system metadata key of an object's canned ACL.
pub const OBJECT_KEY: &str = "s3-acl";
/// The container header a public bucket carries.
const READ_HEADER: &str = "x-container-read";
/// What `public-read` sets on the bucket's container: anyone reads its
/// objects and lists it.
const PUBLIC_READ: &str = ".r:*,.rlistings";
/// The group S3 names for everyone.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// A canned ACL Nubo keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Canned {
    /// Only the owner.
    Private,
    /// The owner, and anyone may read.
    PublicRead,
}

impl Canned {
    /// Reads an `x-amz-acl` value.
    pub fn parse(value: &str) -> S3Result<Canned> {
        match value {
            "private" => Ok(Canned::Private),
            "public-read" => Ok(Canned::PublicRead),
            "public-read-write"
            | "authenticated-read"
            | "aws-exec-read"
            | "bucket-owner-read"
            | "bucket-owner-full-control"
            | "log-delivery-write" => Err(s3_error!(
                NotImplemented,
                "Only the private and public-read canned ACLs are supported."
            )),
            _ => Err(s3_error!(InvalidArgument, "Unknown canned ACL {value}.")),
        }
    }

    /// A request's canned ACL, refusing the grants Nubo does not keep.
    pub fn of_request(canned: Option<&str>, grants: bool) -> S3Result<Option<Canned>> {
        if grants {
            return Err(s3_error!(
                NotImplemented,
                "Only canned ACLs (x-amz-acl) are supported."
            ));
        }
        canned.map(Canned::parse).transpose()
    }
}

/// A request that may carry grants Nubo does not keep (an XML policy,
/// `x-amz-grant-*` headers).
pub trait Granting {
    /// Whether it carries any.
    fn has_grants(&self) -> bool;
}

macro_rules! granting {
    ($($input:ty => [$($field:ident),+]);+ $(;)?) => {
        $(impl Granting for $input {
            fn has_grants(&self) -> bool {
                false $(|| self.$field.is_some())+
            }
        })+
    };
}

granting! {
    CreateBucketInput => [grant_full_control, grant_read, grant_read_acp, grant_write, grant_write_acp];
    PutBucketAclInput => [access_control_policy, grant_full_control, grant_read, grant_read_acp,
                          grant_write, grant_write_acp];
    PutObjectAclInput => [access_control_policy, grant_full_control, grant_read, grant_read_acp,
                          grant_write, grant_write_acp];
    PutObjectInput => [grant_full_control, grant_read, grant_read_acp, grant_write_acp];
}

/// Whether a bucket's container lets anyone read its objects, and list it.
pub fn bucket_public(container_meta: &HeaderMap) -> (bool, bool) {
    let acl = header_str(container_meta, READ_HEADER).unwrap_or_default();
    let items: Vec<&str> = acl.split(',').map(str::trim).collect();
    let objects = items.contains(&".r:*");
    (objects, objects && items.contains(&".rlistings"))
}

/// Sets a bucket's canned ACL.
pub async fn set_bucket(
    objects: &Objects,
    account: &str,
    name: &str,
    canned: Canned,
) -> S3Result<()> {
    let value = match canned {
        Canned::PublicRead => PUBLIC_READ,
        // An empty value removes the read ACL, as in Swift.
        Canned::Private => "",
    };
    bucket::set_config(objects, account, name, READ_HEADER, value).await
}

/// Whether an object's metadata makes it public.
pub fn object_public(meta: &ObjectMeta) -> bool {
    meta.system
        .iter()
        .any(|(k, v)| k == OBJECT_KEY && v == "public-read")
}

/// The system metadata an object's canned ACL is kept as.
pub fn object_entry(canned: Canned) -> (String, String) {
    let value = match canned {
        Canned::PublicRead => "public-read",
        Canned::Private => "private",
    };
    (OBJECT_KEY.to_string(), value.to_string())
}

/// The grants S3 shows for an owner and, if public, everyone's read.
pub fn grants(account: &str, public: bool) -> Grants {
    let mut out = vec![Grant {
        grantee: Some(Grantee {
            display_name: Some(account.to_string()),
            email_address: None,
            id: Some(account.to_string()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if public {
        out.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                email_address: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                uri: Some(ALL_USERS.to_string()),
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    out
}

/// Who may call which operation, before it runs: unsigned requests reach
/// only the reads an ACL may open (the operations then decide, with
/// [`anonymous_account`]); a signer whose identity-service role is
/// `reader` reaches only reads (`Get*`, `Head*`, `List*`), as on the
/// Swift side.
pub struct Access {
    identity: Arc<TempAuth>,
}

impl Access {
    pub fn new(identity: Arc<TempAuth>) -> Access {
        Access { identity }
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name();
        let read = ["Get", "Head", "List"].iter().any(|p| op.starts_with(p));
        match cx.credentials() {
            Some(c)
                if !read
                    && self
                        .identity
                        .ec2_read_only(&super::auth::access_key_of(&c.access_key)) =>
            {
                Err(s3_error!(AccessDenied, "The reader role may only read."))
            }
            Some(_) => Ok(()),
            None => match op {
                "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2" => Ok(()),
                _ => Err(s3_error!(AccessDenied, "Signature is required")),
            },
        }
    }
}

/// What an anonymous request may read.
pub enum Anonymous<'a> {
    /// The bucket's listing.
    Listing,
    /// An object (a version of it, if named).
    Object(&'a str, Option<&'a str>),
}

/// The account whose bucket an anonymous request reads, if the bucket's
/// or the object's ACL lets anyone read it; `AccessDenied` otherwise
/// (whether or not the bucket or object exists, as S3 answers strangers).
pub async fn anonymous_account(
    objects: &Objects,
    bucket_name: &str,
    what: Anonymous<'_>,
) -> S3Result<String> {
    let denied = || s3_error!(AccessDenied);
    let account = bucket::registered_owner(objects, bucket_name)
        .await?
        .ok_or_else(denied)?;
    let meta = objects
        .container_meta(&account, bucket_name)
        .await
        .map_err(|_| denied())?;
    let (objects_public, listing_public) = bucket_public(&meta);
    match what {
        Anonymous::Listing if listing_public => Ok(account),
        Anonymous::Listing => Err(denied()),
        Anonymous::Object(..) if objects_public => Ok(account),
        Anonymous::Object(key, version) => {
            let path = ObjectPath::new(account.clone(), bucket_name, key);
            let stored = objects
                .stored_version(&path, version)
                .await
                .map_err(|_| denied())?;
            let head = objects.head_newest(&stored).await.map_err(|_| denied())?;
            if object_public(&ObjectMeta::from_stored(&head)) {
                Ok(account)
            } else {
                Err(denied())
            }
        }
    }
}
