//! Volume contents: resolving a claim to its PV and backing volume, and reading or writing
//! the bytes a test stores there (exposed over HTTP and on the handle).

use super::error::{ApiError, ApiResult};
use super::registry::keys;
use super::state::State;

impl State {
    /// The backing volume id of a bound claim; 404 if the claim is missing, 409 if unbound.
    pub fn claim_volume_id(&self, ns: &str, claim: &str) -> ApiResult<String> {
        let pvc = self
            .get(&keys::pvcs(), ns, claim)
            .ok_or_else(|| ApiError::not_found("", "persistentvolumeclaims", claim))?;
        let unbound = || {
            let mut err = ApiError::conflict("", "persistentvolumeclaims", claim);
            err.message = format!("persistentvolumeclaims \"{claim}\" is not bound to a volume with data");
            err
        };
        if pvc["status"]["phase"] != "Bound" {
            return Err(unbound());
        }
        let pv_name = pvc["spec"]["volumeName"].as_str().ok_or_else(unbound)?;
        let pv = self.get(&keys::pvs(), "", pv_name).ok_or_else(unbound)?;
        let handle = pv["spec"]["csi"]["volumeHandle"].as_str().ok_or_else(unbound)?;
        if !self.volumes.contains_key(handle) {
            return Err(unbound());
        }
        Ok(handle.to_string())
    }

    pub fn read_claim_data(&self, ns: &str, claim: &str) -> ApiResult<Vec<u8>> {
        let id = self.claim_volume_id(ns, claim)?;
        if let Some(aws) = &self.aws
            && let Some(bytes) = aws.read_file_system(&id).or_else(|| aws.read_ebs_volume(&id))
        {
            return Ok(bytes);
        }
        Ok(self.volumes.get(&id).map(|v| v.payload.clone()).unwrap_or_default())
    }

    pub fn write_claim_data(&mut self, ns: &str, claim: &str, bytes: Vec<u8>) -> ApiResult<()> {
        let id = self.claim_volume_id(ns, claim)?;
        if let Some(written) = self.aws.as_ref().and_then(|aws| aws.write_file_system(&id, bytes.clone())) {
            return written
                .map_err(|message| ApiError { message, ..ApiError::conflict("", "persistentvolumeclaims", claim) });
        }
        // A claim on an EBS volume the simulated AWS holds writes the volume itself.
        if self.aws.as_ref().and_then(|aws| aws.write_ebs_volume(&id, bytes.clone())).is_some() {
            return Ok(());
        }
        let volume = self.volumes.get_mut(&id).ok_or_else(|| ApiError::internal("backing volume vanished"))?;
        volume.payload = bytes;
        Ok(())
    }
}
