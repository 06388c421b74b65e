-- The relay also submits a patient's signed delegate changes (SetDelegate, SetProxy,
-- RemoveDelegate): their kinds join grant and revoke; `grantee` holds the delegate for them.
ALTER TABLE relay_submissions DROP CONSTRAINT IF EXISTS relay_submissions_kind_check;
ALTER TABLE relay_submissions ADD CONSTRAINT relay_submissions_kind_check
    CHECK (kind IN ('grant', 'revoke', 'set-delegate', 'set-proxy', 'remove-delegate'));
