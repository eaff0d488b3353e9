module github.com/mqtt-authproxy/mqtt-authproxy

go 1.26.0

require (
	github.com/eclipse/paho.golang v0.23.0
	github.com/mochi-mqtt/server/v2 v2.7.9
)

require github.com/stretchr/testify v1.12.1 // indirect
