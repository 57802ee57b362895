//! task-api against real PostgreSQL and RabbitMQ, in-process.

mod accounts;
mod batches;
mod contexts;
mod helpers;
mod https;
mod operations;
mod retention;
mod scheduled_queues;
mod site_archives;
mod sites;
mod tasks;
