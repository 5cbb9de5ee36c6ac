// Package queue will carry jobs between the API and the workers over Redis
// Streams with a consumer group (issue 3).
package queue
