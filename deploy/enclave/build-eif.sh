#!/usr/bin/env bash
# Build the enclave image and its EIF, and print the EIF's measurements (PCR0/1/2).
# Used by `make eif`. Needs docker (with a running daemon) and nitro-cli, i.e. an EC2
# instance with the Nitro Enclaves CLI installed; without them it explains what it
# would do and exits 0.
#
#   IMAGE   docker tag to build and convert        (default sealgate-enclave:latest)
#   EIF     output file                              (default target/sealgate-enclave.eif)
#   KMS_KEY_ARN  the only KMS key the enclave takes data keys from (required: the
#           stack's SealingKeyArn output); baked into the image, so PCR0 covers it
set -euo pipefail

cd "$(dirname "$0")/../.."
IMAGE="${IMAGE:-sealgate-enclave:latest}"
EIF="${EIF:-target/sealgate-enclave.eif}"

missing=()
command -v docker >/dev/null 2>&1 || missing+=("docker")
command -v nitro-cli >/dev/null 2>&1 || missing+=("nitro-cli")
if [[ ${#missing[@]} -eq 0 ]] && ! docker info >/dev/null 2>&1; then
    missing+=("a running docker daemon")
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    cat <<MSG
make eif: skipped — not found here: ${missing[*]}.

On a Nitro Enclaves build host (e.g. Amazon Linux 2023 with aws-nitro-enclaves-cli and
docker installed; see deploy/README.md) this target runs:

  DOCKER_BUILDKIT=1 docker build -f deploy/enclave/Dockerfile --build-arg KMS_KEY_ARN=\$KMS_KEY_ARN -t ${IMAGE} .
  nitro-cli build-enclave --docker-uri ${IMAGE} --output-file ${EIF}

and prints the EIF's measurements (PCR0, PCR1, PCR2, SHA-384). PCR0 is the value to
pass as EnclavePcr0 to deploy/cloudformation/broker-host.yaml and to auditors as
\`sealgate-verify attest --pcr 0=<PCR0>\`. The measurements are also saved next to the
EIF as ${EIF}.json.
MSG
    exit 0
fi

mkdir -p "$(dirname "${EIF}")"
if [[ ! "${KMS_KEY_ARN:-}" =~ ^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$ ]]; then
    echo "make eif: set KMS_KEY_ARN to the KMS key ARN the enclave may use (the stack's SealingKeyArn output)" >&2
    exit 2
fi
DOCKER_BUILDKIT=1 docker build -f deploy/enclave/Dockerfile --build-arg KMS_KEY_ARN="${KMS_KEY_ARN}" -t "${IMAGE}" .
nitro-cli build-enclave --docker-uri "${IMAGE}" --output-file "${EIF}" | tee "${EIF}.json"
echo
echo "EIF:  ${EIF}"
if command -v python3 >/dev/null 2>&1; then
    python3 - "${EIF}.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["Measurements"]
for k in ("PCR0", "PCR1", "PCR2"):
    print(f"{k}: {m[k]}")
PY
fi
