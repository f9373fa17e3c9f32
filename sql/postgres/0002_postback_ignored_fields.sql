-- The names of the parameters a query or form postback carried that are not postback fields
-- (platforms add their own), kept so that a misnamed field shows in the log.
ALTER TABLE postback_log ADD COLUMN ignored_fields TEXT;
