metadata name = 'dipguard Azure Managed Redis'
metadata description = 'An Azure Managed Redis cluster (Microsoft.Cache/redisEnterprise) with one TLS-only database that accepts Entra ID tokens and no access keys.'

@description('Required. Name of the Azure Managed Redis cluster.')
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. SKU of the cluster. Balanced_B0 is the cheapest; size up for throughput, not only memory. main.bicep\'s redisSkuName says how to size it for the read model.')
param skuName string = 'Balanced_B1'

@description('Optional. Replicate the data set inside the cluster. Disabling it halves the price and removes the SLA: dev only.')
param highAvailability bool = true

@description('''Optional. Clustering policy of the database. EnterpriseCluster gives one endpoint that any
client can use, and the app's default non-cluster client. OSSCluster spreads
keys over shards by slot: the app then connects cluster-aware (main.bicep sets REDIS_CLUSTER),
and the valve's keys share one {hash tag}, so its script runs on one shard. The policy cannot
be changed once the database exists.''')
@allowed([
  'EnterpriseCluster'
  'OSSCluster'
])
param clusteringPolicy string = 'EnterpriseCluster'

@description('Optional. TLS port of the database endpoint.')
param port int = 10000

@description('Optional. Resource ID of the subnet for a private endpoint. Given: the cluster gets a private endpoint (group redisEnterprise) and its public network access is disabled. Empty: the public endpoint stays open, guarded by Entra ID access policy assignments only.')
param privateEndpointSubnetResourceId string = ''

@description('Optional. Resource ID of the privatelink.redis.azure.net private DNS zone; required with privateEndpointSubnetResourceId.')
param privateDnsZoneResourceId string = ''

var isPrivate = !empty(privateEndpointSubnetResourceId)

resource redisCluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability ? 'Enabled' : 'Disabled'
    // Private networking: only the private endpoint below reaches the cluster ("Secure your
    // Azure Managed Redis": with public access, an empty firewall rule set allows all public
    // traffic). Without it (dev), the public endpoint stays open; access keys are off, so only
    // Entra ID principals given an access policy assignment can connect.
    publicNetworkAccess: isPrivate ? 'Disabled' : 'Enabled'
  }
}

// The eviction policy. The valve's log, the read model's Bloom filters, its marker and the
// warm's lease have no TTL, and under a volatile-* policy (VolatileLRU here) Redis never
// evicts a key without a TTL. So memory pressure takes the least recently used cached
// answers, each of which costs at most a database read within the valve's budget, and never
// the read budget or the proof that a caller is absent. An allkeys-* policy could evict a
// Bloom filter or the valve's log; NoEviction would fail the warm's writes instead.
resource redisCluster_database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: redisCluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: port
    clusteringPolicy: clusteringPolicy
    // Set explicitly, not left to the default: see the eviction policy note above.
    evictionPolicy: 'VolatileLRU'
    accessKeysAuthentication: 'Disabled'
  }
}

// Group redisEnterprise, zone privatelink.redis.azure.net (Azure Managed Redis with Azure
// Private Link, ms.date 11/15/2024). Clients keep the cluster's own host name,
// <name>.<region>.redis.azure.net, which resolves to the endpoint inside the network.
module redisCluster_privateEndpoint 'private-endpoint.bicep' = if (isPrivate) {
  name: '${name}-pe'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetResourceId: privateEndpointSubnetResourceId
    privateLinkServiceId: redisCluster.id
    groupId: 'redisEnterprise'
    privateDnsZoneResourceId: privateDnsZoneResourceId
  }
}

@description('The name of the Azure Managed Redis cluster.')
output name string = redisCluster.name

@description('The resource ID of the Azure Managed Redis cluster.')
output resourceId string = redisCluster.id

@description('The name of the database.')
output databaseName string = redisCluster_database.name

@description('The host name clients connect to.')
output hostName string = redisCluster.properties.hostName

@description('The TLS port of the database.')
output port int = port

@description('The URL the app uses: TLS, no password (Entra ID token auth), database 0.')
output url string = 'rediss://${redisCluster.properties.hostName}:${port}/0'
