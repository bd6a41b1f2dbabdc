"""SIP: each line's SIP account (the credentials a softphone registers with) and what Kamailio reads."""
