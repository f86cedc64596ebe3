metadata name = 'dipguard virtual network'
metadata description = 'The virtual network of the deployment: the subnet a v2-tier API Management gateway calls the function apps from, and, with private networking, the subnet the function apps integrate with, the subnet of the private endpoints and the private DNS zones those endpoints register in.'

// Standard v2 gateways call backends from addresses that are not documented as static, and
// the ApiManagement service tag covers the control plane, not the gateway's calls
// (learn.microsoft.com/azure/api-management/api-management-howto-ip-addresses). Outbound
// virtual network integration puts those calls in a subnet of this network instead
// (learn.microsoft.com/azure/api-management/integrate-vnet-outbound), and the service
// endpoint lets the function app admit that subnet, and nothing else, by rule.
//
// Private networking: the function apps send all their outbound traffic into the app
// subnet (virtual network integration), and reach host storage, customer storage, Redis and
// Key Vault through private endpoints in the endpoint subnet, whose names resolve to private
// addresses through the private DNS zones linked here.

@description('Required. Name of the virtual network.')
param name string

@description('Required. Name of the network security group on the API Management subnet.')
param networkSecurityGroupName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Create the subnet a StandardV2 API Management gateway integrates with.')
param apimSubnetEnabled bool = true

@description('Optional. Address range of the API Management subnet. API Management needs at least a /27 and recommends a /24 so the gateway can scale out.')
param addressPrefix string = '10.90.0.0/24'

@description('Optional. Name of the subnet API Management integrates with.')
param subnetName string = 'apim-outbound'

@description('Optional. Create the function apps\' integration subnet, the private endpoint subnet and the private DNS zones.')
param privateNetworking bool = false

@description('Optional. Name of the network security group on the app and private endpoint subnets.')
param privateNetworkSecurityGroupName string = '${networkSecurityGroupName}-private'

@description('Optional. Name of the network security group of the private endpoints\' subnet.')
param privateEndpointNetworkSecurityGroupName string = '${networkSecurityGroupName}-endpoints'

@description('Optional. Name of the subnet the function apps integrate with.')
param appSubnetName string = 'app-integration'

// functions-premium-plan: the integration subnet needs "an IP block with at least 100
// available addresses"; a /24 leaves room for the plan's burst.
@description('Optional. Address range of the function apps\' integration subnet: at least a /25 (100 addresses) for an Elastic Premium plan; /24 lets the plan burst.')
param appSubnetAddressPrefix string = '10.90.1.0/24'

@description('Optional. Name of the subnet that holds the private endpoints.')
param privateEndpointSubnetName string = 'private-endpoints'

@description('Optional. Address range of the private endpoint subnet (one address per endpoint).')
param privateEndpointSubnetAddressPrefix string = '10.90.2.0/26'

// The zone of each private link sub-resource the deployment connects to: storage table, blob,
// file and queue and Key Vault vault (Azure Private Endpoint DNS configuration, "Azure
// services DNS zone configuration"), and Azure Managed Redis (Microsoft.Cache/redisEnterprise,
// group redisEnterprise): privatelink.redis.azure.net, which Azure Managed Redis with Azure
// Private Link (ms.date 11/15/2024, FAQ "How do I connect to my cache with private
// endpoint?") names; not privatelink.redisenterprise.cache.azure.net, the zone of the older
// Azure Cache for Redis Enterprise host names (*.redisenterprise.cache.azure.net).
// The names are the Azure public cloud's: sovereign clouds have zones of their own.
var privateDnsZoneNames = {
  table: 'privatelink.table.core.windows.net'
  blob: 'privatelink.blob.core.windows.net'
  file: 'privatelink.file.core.windows.net'
  queue: 'privatelink.queue.core.windows.net'
  vault: 'privatelink.vaultcore.azure.net'
  redisEnterprise: 'privatelink.redis.azure.net'
}
var privateDnsZoneList = [
  privateDnsZoneNames.table
  privateDnsZoneNames.blob
  privateDnsZoneNames.file
  privateDnsZoneNames.queue
  privateDnsZoneNames.vault
  privateDnsZoneNames.redisEnterprise
]

// integrate-vnet-outbound: "A network security group must be associated with the subnet.
// No specific rules are required." The default rules already allow outbound traffic to
// the function app.
resource networkSecurityGroup 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: networkSecurityGroupName
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

// The apps' integration subnet: the default rules deny inbound traffic from outside the
// network, and the apps take no inbound traffic through it.
resource privateNetworkSecurityGroup 'Microsoft.Network/networkSecurityGroups@2024-05-01' = if (privateNetworking) {
  name: privateNetworkSecurityGroupName
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

var apimSubnet = {
  name: subnetName
  properties: {
    addressPrefix: addressPrefix
    networkSecurityGroup: {
      id: networkSecurityGroup.id
    }
    // API Management v2 integration is built on App Service's: the subnet is
    // delegated to Microsoft.Web/serverFarms and used by this one instance only.
    delegations: [
      {
        name: 'Microsoft.Web.serverFarms'
        properties: {
          serviceName: 'Microsoft.Web/serverFarms'
        }
      }
    ]
    // Microsoft.Web: the function app's access restriction can name this subnet
    // (App Service access restrictions by service endpoint).
    serviceEndpoints: [
      {
        service: 'Microsoft.Web'
      }
    ]
  }
}

// Both function apps sit on one plan, and a plan uses one integration subnet.
var appSubnet = {
  name: appSubnetName
  properties: {
    addressPrefix: appSubnetAddressPrefix
    networkSecurityGroup: {
      id: resourceId('Microsoft.Network/networkSecurityGroups', privateNetworkSecurityGroupName)
    }
    delegations: [
      {
        name: 'Microsoft.Web.serverFarms'
        properties: {
          serviceName: 'Microsoft.Web/serverFarms'
        }
      }
    ]
  }
}

// The private endpoints answer the apps' integration subnet alone: not API Management's
// subnet in the same network, nor anything else in it. A network security group applies to
// private endpoint traffic only when the subnet's privateEndpointNetworkPolicies enable it
// (Manage network policies for private endpoints). Ports: 443 (blob, queue, table, Key
// Vault), 445 (the content share, SMB), 10000 and 8500-8599 (Azure Managed Redis, its
// cluster nodes).
resource privateEndpointNetworkSecurityGroup 'Microsoft.Network/networkSecurityGroups@2024-05-01' = if (privateNetworking) {
  name: privateEndpointNetworkSecurityGroupName
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-app-integration'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: appSubnetAddressPrefix
          sourcePortRange: '*'
          destinationAddressPrefix: privateEndpointSubnetAddressPrefix
          destinationPortRanges: [
            '443'
            '445'
            '10000'
            '8500-8599'
          ]
        }
      }
      {
        name: 'deny-rest-of-network'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'VirtualNetwork'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

var privateEndpointSubnet = {
  name: privateEndpointSubnetName
  properties: {
    addressPrefix: privateEndpointSubnetAddressPrefix
    networkSecurityGroup: {
      id: resourceId('Microsoft.Network/networkSecurityGroups', privateEndpointNetworkSecurityGroupName)
    }
    privateEndpointNetworkPolicies: 'NetworkSecurityGroupEnabled'
  }
}

// The subnets are declared inside the network, so a redeploy does not remove and re-add
// them while API Management or the apps are attached.
resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: concat(apimSubnetEnabled ? [addressPrefix] : [], privateNetworking ? [appSubnetAddressPrefix, privateEndpointSubnetAddressPrefix] : [])
    }
    subnets: concat(apimSubnetEnabled ? [apimSubnet] : [], privateNetworking ? [appSubnet, privateEndpointSubnet] : [])
  }
  dependsOn: [
    privateNetworkSecurityGroup
    privateEndpointNetworkSecurityGroup
  ]
}

resource privateDnsZones 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for zoneName in (privateNetworking ? privateDnsZoneList : []): {
    name: zoneName
    location: 'global'
    tags: tags
  }
]

// Linked to this network, so the apps (integrated with it) resolve the services' own host
// names to the private endpoints' addresses.
resource privateDnsZones_virtualNetworkLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (zoneName, i) in (privateNetworking ? privateDnsZoneList : []): {
    parent: privateDnsZones[i]
    name: name
    location: 'global'
    tags: tags
    properties: {
      virtualNetwork: {
        id: virtualNetwork.id
      }
      registrationEnabled: false
    }
  }
]

// Module outputs are read only after the whole module has deployed, so a caller that uses
// these IDs waits for the zones and their links.
var privateDnsZoneResourceIds = {
  table: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.table)
  blob: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.blob)
  file: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.file)
  queue: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.queue)
  vault: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.vault)
  redisEnterprise: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames.redisEnterprise)
}

@description('The name of the virtual network.')
output name string = virtualNetwork.name

@description('The resource ID of the virtual network.')
output resourceId string = virtualNetwork.id

@description('The resource ID of the subnet API Management integrates with; empty without it.')
output subnetResourceId string = apimSubnetEnabled ? '${virtualNetwork.id}/subnets/${subnetName}' : ''

@description('The resource ID of the subnet the function apps integrate with; empty without private networking.')
output appSubnetResourceId string = privateNetworking ? '${virtualNetwork.id}/subnets/${appSubnetName}' : ''

@description('The resource ID of the private endpoint subnet; empty without private networking.')
output privateEndpointSubnetResourceId string = privateNetworking ? '${virtualNetwork.id}/subnets/${privateEndpointSubnetName}' : ''

@description('The resource ID of each private DNS zone by private link sub-resource (table, blob, file, queue, vault, redisEnterprise); empty without private networking.')
output privateDnsZoneResourceIds object = privateNetworking ? privateDnsZoneResourceIds : {}
