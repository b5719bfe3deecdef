"""openstacksdk against Nubo's Keystone v3 API: one connection from the
auth URL and a password, then the object store, the image service and
compute through the catalog the token brings."""
import os
import tempfile

import openstack

conn = openstack.connect(
    auth_url=os.environ["NUBO_IDENTITY_URL"], username="tester", password="testing",
    project_name="test", user_domain_name="Default", project_domain_name="Default",
    region_name="RegionOne")
assert conn.authorize(), "no token"
assert conn.current_project_id == "test", conn.current_project_id
assert "test" in [p.name for p in conn.identity.projects()]
assert "member" in [r.name for r in conn.identity.roles()]

conn.object_store.create_container(name="sdk-box")
conn.object_store.upload_object(container="sdk-box", name="hello", data=b"hello sdk")
assert conn.object_store.download_object("hello", container="sdk-box") == b"hello sdk"
assert [o.name for o in conn.object_store.objects("sdk-box")] == ["hello"]

with tempfile.NamedTemporaryFile(suffix=".raw") as f:
    f.write(b"\0" * (1 << 20))
    f.flush()
    image = conn.create_image("sdk-image", filename=f.name, disk_format="raw",
                              container_format="bare", wait=True)
assert conn.image.get_image(image.id).status == "active"
assert "sdk-image" in [i.name for i in conn.image.images()]

assert "m1.tiny" in [f.name for f in conn.compute.flavors()]

# Key pairs: one the server generates (its private key given once), one
# imported; duplicates and malformed keys refused as Nova refuses them.
made = conn.compute.create_keypair(name="sdk-made")
assert "PRIVATE KEY" in made.private_key, made
assert made.public_key.startswith("ssh-ed25519 "), made.public_key
shown = conn.compute.get_keypair("sdk-made")
assert shown.fingerprint == made.fingerprint and shown.private_key is None, shown
try:
    conn.compute.create_keypair(name="sdk-made", public_key=made.public_key)
    raise AssertionError("a second key pair of one name")
except openstack.exceptions.ConflictException:
    pass
for bad_name, bad_key in [("sdk-bad", "ssh-rsa AAAA"), ("bad/name", made.public_key)]:
    try:
        conn.compute.create_keypair(name=bad_name, public_key=bad_key)
        raise AssertionError(f"accepted {bad_name!r} {bad_key!r}")
    except openstack.exceptions.BadRequestException:
        pass
imported = conn.compute.create_keypair(name="sdk key", public_key=made.public_key)
assert imported.fingerprint == made.fingerprint
# (openstack.sh, run before by the same user, leaves its own key.)
def sdk_keys():
    return sorted(k.name for k in conn.compute.keypairs() if k.name.startswith("sdk"))
assert sdk_keys() == ["sdk key", "sdk-made"], sdk_keys()
conn.compute.delete_keypair("sdk key")
assert sdk_keys() == ["sdk-made"], sdk_keys()
try:
    conn.compute.get_keypair("sdk key")
    raise AssertionError("a deleted key pair shown")
except openstack.exceptions.NotFoundException:
    pass
conn.compute.delete_keypair("sdk-made")
print("openstacksdk: ok")
