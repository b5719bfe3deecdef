#!/usr/bin/env bash
# The stock `openstack` CLI (python-openstackclient), python-swiftclient
# and the glance CLI logging in through Nubo's Keystone v3 API with the
# OS_* variables only, then using the catalog it returns.
set -euo pipefail
export OS_AUTH_URL="$NUBO_IDENTITY_URL" OS_USERNAME=tester OS_PASSWORD=testing
export OS_PROJECT_NAME=test OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_IDENTITY_API_VERSION=3 OS_INTERFACE=public
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Reads all its input (grep -q would stop early and fail the pipeline).
has() { grep "$@" >/dev/null; }

# Tokens and the catalog.
token=$(openstack token issue -f value -c id)
[ -n "$token" ] || fail "no token"
openstack token issue -f json | has '"project_id": "test"' || fail "token not scoped to project test"
openstack catalog list -f value -c Type | sort | tr '\n' ' ' | has "compute identity image object-store" \
  || fail "catalog: $(openstack catalog list -f value -c Type)"
openstack catalog show object-store -f json | has "/v1/AUTH_test" || fail "swift endpoint"

# Admin calls: projects, users, roles.
openstack project list -f value -c Name | has -x test || fail "project list"
openstack project create --domain Default demo -f value -c id > "$W/demo_id"
openstack user create --domain Default --password s3cret --project demo alice -f value -c id > "$W/alice_id"
openstack role add --user alice --project demo member
openstack role assignment list --user alice --project demo --names -f value -c Role | has -x member \
  || fail "role assignment list"
openstack user list -f value -c Name | has -x alice || fail "user list"
openstack role list -f value -c Name | has -x reader || fail "role list"

# The new user logs in to the new project and sees only it.
alice() { OS_USERNAME=alice OS_PASSWORD=s3cret OS_PROJECT_NAME=demo openstack "$@"; }
alice token issue -f value -c project_id | has -x "$(cat "$W/demo_id")" || fail "alice's token"
# Refused the list of every project, the CLI falls back on her own.
[ "$(alice project list -f value -c Name)" = demo ] || fail "alice sees other projects"
alice container create alice-box >/dev/null
echo hello > "$W/hello.txt"
(cd "$W" && alice object create alice-box hello.txt >/dev/null)
alice object list alice-box -f value -c Name | has -x hello.txt || fail "alice's object list"

# Swift through the catalog: the CLI and python-swiftclient with v3 auth.
openstack container create os-box >/dev/null
head -c 300000 /dev/urandom > "$W/blob.bin"
(cd "$W" && openstack object create os-box blob.bin >/dev/null)
openstack object list os-box -f value -c Name | has -x blob.bin || fail "object list"
openstack object save os-box blob.bin --file "$W/back.bin"
cmp "$W/blob.bin" "$W/back.bin" || fail "object save returned other bytes"
swift --os-auth-url "$OS_AUTH_URL" --auth-version 3 --os-username tester --os-password testing \
  --os-project-name test --os-user-domain-name Default --os-project-domain-name Default \
  list os-box | has -x blob.bin || fail "swiftclient v3 list"
# What alice wrote is in her project's account, not in test's.
if openstack object list alice-box >/dev/null 2>&1; then fail "test sees alice's container"; fi

# Images and compute through the same token.
head -c 1048576 /dev/zero > "$W/disk.raw"
openstack image create --disk-format raw --container-format bare --file "$W/disk.raw" os-image -f value -c id > "$W/image_id"
openstack image list -f value -c Name | has -x os-image || fail "image list"
openstack image show os-image -f value -c status | has -x active || fail "image status"
openstack image save os-image --file "$W/disk.back"
cmp "$W/disk.raw" "$W/disk.back" || fail "image save returned other bytes"
openstack flavor list -f value -c Name | has -x m1.tiny || fail "flavor list"
qemu-img create -q -f qcow2 "$W/disk.qcow2" 8M
openstack image create --disk-format qcow2 --container-format bare --file "$W/disk.qcow2" os-qcow2 >/dev/null
openstack image show os-qcow2 -f value -c disk_format | has -x qcow2 || fail "qcow2 image"

# Key pairs: imported from a file, made by the CLI, per user.
ssh-keygen -q -t ed25519 -N "" -C os-key -f "$W/id_os"
openstack keypair create --public-key "$W/id_os.pub" os-key >/dev/null
expected=$(ssh-keygen -l -E md5 -f "$W/id_os.pub" | awk '{print $2}' | sed 's/^MD5://')
openstack keypair show os-key -f value -c fingerprint | has -x "$expected" \
  || fail "keypair fingerprint: $(openstack keypair show os-key -f value -c fingerprint), want $expected"
openstack keypair show --public-key os-key | has -F "$(cut -d' ' -f2 "$W/id_os.pub")" || fail "keypair public key"
openstack keypair create os-made > "$W/made.pem"
grep -q "PRIVATE KEY" "$W/made.pem" || fail "keypair create gave no private key"
openstack keypair list -f value -c Name | sort | tr '\n' ' ' | has -x "os-key os-made " || fail "keypair list"
if openstack keypair create --public-key "$W/id_os.pub" os-key >/dev/null 2>"$W/err"; then
  fail "a second key pair of one name"
fi
has -i "already exists" "$W/err" || fail "duplicate key pair: $(cat "$W/err")"
echo "ssh-ed25519 AAAAnotakey" > "$W/bad.pub"
if openstack keypair create --public-key "$W/bad.pub" os-bad >/dev/null 2>&1; then fail "a malformed key accepted"; fi
[ -z "$(alice keypair list -f value -c Name)" ] || fail "alice sees tester's key pairs"
openstack keypair delete os-made
openstack keypair list -f value -c Name | has -x os-made && fail "keypair delete"
if openstack server create --image os-qcow2 --flavor m1.tiny --key-name no-such-key os-nokey >/dev/null 2>&1; then
  fail "a server with an unknown key name"
fi

# A server from that image (an idle guest under software emulation).
printf '#cloud-config\nruncmd: [echo hi]\n' > "$W/user-data"
[ "$(openstack server create --image os-qcow2 --flavor m1.tiny --key-name os-key \
      --user-data "$W/user-data" --wait os-vm -f value -c status)" = ACTIVE ] \
  || fail "server create --wait"
openstack server show os-vm -f value -c key_name | has -x os-key || fail "server key_name"
openstack server list -f value -c Name -c Status | has -x "os-vm ACTIVE" || fail "server list"
openstack server show os-vm -f value -c status | has -x ACTIVE || fail "server show"
openstack server show os-vm -f value -c addresses | has "private.*10\.42\.0\.[0-9]" \
  || fail "server addresses"
openstack server list -f value -c Networks | has "10\.42\.0\." || fail "server list Networks"
openstack console log show os-vm >/dev/null || fail "console log show"
openstack console url show --serial os-vm -f value -c url | has "^ws://127\.0\.0\.1:[0-9]*/instances/.*/serial?token=" \
  || fail "console url show --serial: $(openstack console url show --serial os-vm 2>&1)"
if openstack console url show --novnc os-vm >/dev/null 2>"$W/err"; then fail "a VNC console where none exists"; fi
has "Unavailable console type" "$W/err" || fail "console url show --novnc: $(cat "$W/err")"
# Security groups, nova-network's. The stock CLI (10.x) manages groups
# only through Neutron's API, which Nubo does not serve, so the group and
# its rule are made through openstacksdk's compute proxy; the CLI's
# server commands still speak nova-network and are used as they are.
python3 - <<'PY' || fail "security group create through openstacksdk"
import openstack
c = openstack.connect()
r = c.compute.post("/os-security-groups", json={"security_group": {"name": "os-web", "description": "web"}}, microversion="2.1")
assert r.status_code == 200, r.text
gid = r.json()["security_group"]["id"]
r = c.compute.post("/os-security-group-rules", json={"security_group_rule": {"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"}}, microversion="2.1")
assert r.status_code == 200, r.text
PY
openstack server add security group os-vm os-web || fail "server add security group"
openstack server show os-vm -f json -c security_groups | has '"os-web"' \
  || fail "server show security_groups: $(openstack server show os-vm -f json -c security_groups)"
openstack server remove security group os-vm os-web || fail "server remove security group"
openstack server show os-vm -f json -c security_groups | has '"os-web"' && fail "server remove security group kept it"
if alice server show os-vm >/dev/null 2>&1; then fail "another project's member sees the server"; fi
openstack server delete --wait os-vm
[ -z "$(openstack server list -f value -c Name)" ] || fail "the server outlived its delete"

# Image members: test shares the image with demo, alice accepts it.
openstack image add project os-image demo >/dev/null
alice image list -f value -c Name | has -x os-image && fail "listed before it was accepted"
alice image set --accept "$(cat "$W/image_id")"
alice image list -f value -c Name | has -x os-image || fail "alice's image list lacks the shared image"

# Revocation: a revoked token stops working.
# `--`: a token may begin with `-`, which the CLI would read as an option.
openstack token revoke -- "$token"
if OS_TOKEN="$token" OS_AUTH_TYPE=token openstack container list >/dev/null 2>&1; then
  fail "a revoked token still works"
fi
echo "openstack CLI: ok"
