metadata name = 'dipguard private endpoint'
metadata description = 'A private endpoint to one sub-resource (group) of a resource, with a DNS zone group that registers its address in the private DNS zone of that sub-resource.'

@description('Required. Name of the private endpoint.')
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Required. Resource ID of the subnet the endpoint takes its address from.')
param subnetResourceId string

@description('Required. Resource ID of the resource the endpoint connects to.')
param privateLinkServiceId string

@description('Required. The sub-resource (group ID) to connect to: table, blob, file, queue, vault or redisEnterprise.')
@allowed([
  'table'
  'blob'
  'file'
  'queue'
  'vault'
  'redisEnterprise'
])
param groupId string

@description('Required. Resource ID of the private DNS zone of that sub-resource, linked to the network of subnetResourceId.')
param privateDnsZoneResourceId string

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetResourceId
    }
    // The deployment owns both sides, so the connection is approved when it is made.
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: privateLinkServiceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

// The zone group writes the endpoint's A record into the zone (and removes it with the
// endpoint), so the service's own host name resolves to the private address inside the
// network.
resource privateEndpoint_privateDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: privateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: replace(last(split(privateDnsZoneResourceId, '/')), '.', '-')
        properties: {
          privateDnsZoneId: privateDnsZoneResourceId
        }
      }
    ]
  }
}

@description('The name of the private endpoint.')
output name string = privateEndpoint.name

@description('The resource ID of the private endpoint.')
output resourceId string = privateEndpoint.id
