DROP TABLE webhook_audit;
