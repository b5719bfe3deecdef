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
print("openstacksdk: ok")
